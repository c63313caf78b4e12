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
/// Schema evolution rules on Apache.Avro's schema resolution (<see cref="AvroSchema.CanRead"/> on the reader):
/// backward = the new schema reads data written with the old one, forward = the old one reads data written with
/// the new one, full = both; the transitive levels check every earlier version, the others the latest only.
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
        throw RegistryErrors.InvalidCompatibilityError();
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
            if (backward && !candidate.CanRead(old))
                problems.Add($"{name}: the new schema cannot read data written with version {version}");
            if (forward && !old.CanRead(candidate))
                problems.Add($"{name}: version {version} cannot read data written with the new schema");
        }
        return problems;
    }
}
