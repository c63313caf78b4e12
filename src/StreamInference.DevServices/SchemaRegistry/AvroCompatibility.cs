using Avro;
using AvroSchema = Avro.Schema;

namespace StreamInference.DevServices.SchemaRegistry;

/// <summary>Confluent's compatibility levels, with the names the REST API uses.</summary>
internal enum CompatibilityLevel
{
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// <summary>
/// Schema evolution rules on Avro schema resolution: backward = the new schema reads data written with the old
/// one, forward = the old one reads data written with the new one, full = both; the transitive levels check every
/// earlier version, the others the latest only. "Reads" is Apache.Avro's <see cref="AvroSchema.CanRead"/> on the
/// reader, made as strict as Confluent's checker where CanRead is looser (see <see cref="CanRead"/>).
/// </summary>
internal static class AvroCompatibility
{
    private static readonly (CompatibilityLevel Level, string Name)[] Names =
    [
        (CompatibilityLevel.None, "NONE"),
        (CompatibilityLevel.Backward, "BACKWARD"),
        (CompatibilityLevel.BackwardTransitive, "BACKWARD_TRANSITIVE"),
        (CompatibilityLevel.Forward, "FORWARD"),
        (CompatibilityLevel.ForwardTransitive, "FORWARD_TRANSITIVE"),
        (CompatibilityLevel.Full, "FULL"),
        (CompatibilityLevel.FullTransitive, "FULL_TRANSITIVE"),
    ];

    public static string Name(CompatibilityLevel level) => Names.First(n => n.Level == level).Name;

    /// <summary>The level for a REST value, case-insensitively; throws 42203 for anything else.</summary>
    public static CompatibilityLevel Parse(string? value)
    {
        foreach (var (level, name) in Names)
            if (string.Equals(value, name, StringComparison.OrdinalIgnoreCase)) return level;
        throw RegistryErrorCodes.InvalidCompatibilityError();
    }

    private static bool IsTransitive(CompatibilityLevel level) =>
        level is CompatibilityLevel.BackwardTransitive or CompatibilityLevel.ForwardTransitive or CompatibilityLevel.FullTransitive;

    /// <summary>
    /// Why <paramref name="candidate"/> breaks <paramref name="level"/> against <paramref name="existing"/> (live
    /// versions, oldest first); empty when it does not.
    /// </summary>
    public static List<string> Check(CompatibilityLevel level, AvroSchema candidate, IReadOnlyList<(int Version, AvroSchema Schema)> existing)
    {
        var problems = new List<string>();
        if (level == CompatibilityLevel.None || existing.Count == 0) return problems;
        var backward = level is CompatibilityLevel.Backward or CompatibilityLevel.BackwardTransitive or CompatibilityLevel.Full or CompatibilityLevel.FullTransitive;
        var forward = level is CompatibilityLevel.Forward or CompatibilityLevel.ForwardTransitive or CompatibilityLevel.Full or CompatibilityLevel.FullTransitive;
        var name = Name(level);
        for (var i = IsTransitive(level) ? 0 : existing.Count - 1; i < existing.Count; i++)
        {
            var (version, old) = existing[i];
            if (backward && !CanRead(candidate, old))
                problems.Add($"{name}: the new schema cannot read data written with version {version}");
            if (forward && !CanRead(old, candidate))
                problems.Add($"{name}: version {version} cannot read data written with the new schema");
        }
        return problems;
    }

    /// <summary>
    /// Whether <paramref name="reader"/> can read data written with <paramref name="writer"/>. Apache.Avro's
    /// CanRead accepts two things the Avro specification and Confluent refuse, so they are checked on top: a writer
    /// union read by a non-union reader (every writer branch must be readable: ["null","int"] → "int" is refused),
    /// and writer enum symbols the reader lacks while it has no enum default.
    /// </summary>
    public static bool CanRead(AvroSchema reader, AvroSchema writer) => reader.CanRead(writer) && Strict(reader, writer, new HashSet<(AvroSchema, AvroSchema)>(SamePair.Instance));

    private static bool Strict(AvroSchema reader, AvroSchema writer, HashSet<(AvroSchema, AvroSchema)> visiting)
    {
        if (reader is LogicalSchema rl) reader = rl.BaseSchema;
        if (writer is LogicalSchema wl) writer = wl.BaseSchema;
        if (writer is UnionSchema writerUnion) return writerUnion.Schemas.All(branch => Strict(reader, branch, visiting) && ReadsBranch(reader, branch));
        if (reader is UnionSchema readerUnion) return readerUnion.Schemas.Any(branch => branch.CanRead(writer) && Strict(branch, writer, visiting));
        if (!visiting.Add((reader, writer))) return true; // a recursive type already being compared
        try
        {
            return (reader, writer) switch
            {
                (EnumSchema r, EnumSchema w) => r.Default is not null || w.Symbols.All(r.Contains),
                (RecordSchema r, RecordSchema w) => r.Fields.All(f =>
                    !(w.TryGetField(f.Name, out var wf) || TryGetByAlias(w, f, out wf)) || Strict(f.Schema, wf!.Schema, visiting)),
                (ArraySchema r, ArraySchema w) => Strict(r.ItemSchema, w.ItemSchema, visiting),
                (MapSchema r, MapSchema w) => Strict(r.ValueSchema, w.ValueSchema, visiting),
                _ => true,
            };
        }
        finally
        {
            visiting.Remove((reader, writer));
        }
    }

    /// <summary>A writer union branch must be readable by the reader itself (or, for a reader union, by one of its branches).</summary>
    private static bool ReadsBranch(AvroSchema reader, AvroSchema branch) =>
        reader is UnionSchema union ? union.Schemas.Any(r => r.CanRead(branch)) : reader.CanRead(branch);

    private static bool TryGetByAlias(RecordSchema writer, Field readerField, out Field? writerField)
    {
        writerField = readerField.Aliases?.Select(a => writer.TryGetField(a, out var f) ? f : null).FirstOrDefault(f => f is not null);
        return writerField is not null;
    }

    /// <summary>Pairs compared by reference: schema equality walks the whole (possibly recursive) type.</summary>
    private sealed class SamePair : IEqualityComparer<(AvroSchema, AvroSchema)>
    {
        public static readonly SamePair Instance = new();
        public bool Equals((AvroSchema, AvroSchema) x, (AvroSchema, AvroSchema) y) => ReferenceEquals(x.Item1, y.Item1) && ReferenceEquals(x.Item2, y.Item2);
        public int GetHashCode((AvroSchema, AvroSchema) pair) =>
            HashCode.Combine(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(pair.Item1), System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(pair.Item2));
    }
}
