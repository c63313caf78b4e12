using System.Text.Json;
using System.Text.Json.Nodes;
using Avro;
using AvroSchema = Avro.Schema;

namespace StreamInference.DevServices.SchemaRegistry;

/// <summary>
/// The registry's state behind one lock: schemas by id and by identity, subjects with their versions (soft-deleted
/// ones kept until a permanent delete), compatibility levels and modes. Errors are thrown as
/// <see cref="RegistryException"/> with Confluent's codes.
/// </summary>
internal sealed class RegistryStore
{
    private const string ReadWrite = "READWRITE";
    private static readonly string[] Modes = [ReadWrite, "READONLY", "READONLY_OVERRIDE"];

    private readonly Lock _gate = new();
    private readonly Dictionary<int, StoredSchema> _byId = [];
    private readonly Dictionary<string, StoredSchema> _byIdentity = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, SubjectState> _subjects = new(StringComparer.Ordinal);
    private int _nextId = 1;
    private CompatibilityLevel _compatibility = CompatibilityLevel.Backward;
    private string _mode = ReadWrite;

    /// <summary>One schema: its id, the text the registry answers with and the identity registrations compare.</summary>
    private sealed record StoredSchema(int Id, string Text, string Identity, AvroSchema Parsed, List<SchemaReferenceBody> References);

    private sealed class SubjectVersion(int version, StoredSchema schema)
    {
        public int Version { get; } = version;
        public StoredSchema Schema { get; } = schema;
        public bool Deleted { get; set; }
    }

    private sealed class SubjectState
    {
        public List<SubjectVersion> Versions { get; } = [];
        public CompatibilityLevel? Compatibility { get; set; }
        public string? Mode { get; set; }
        public bool IsEmpty => Versions.Count == 0 && Compatibility is null && Mode is null;
    }

    /// <summary>A registration without compatibility check or mode (a restart of a registry that keeps its ids).</summary>
    public int Preload(string subject, AvroSchema schema)
    {
        lock (_gate) return AddVersion(subject, Intern(Candidate(schema.ToString(), null)));
    }

    public int Register(string subject, SchemaRequest? request)
    {
        lock (_gate)
        {
            EnsureWritable(subject);
            var candidate = Candidate(request);
            var live = Live(subject, includeDeleted: false);
            foreach (var v in live)
                if (v.Schema.Identity == candidate.Identity) return v.Schema.Id;
            var level = Level(subject);
            var problems = AvroCompatibility.Check(level, candidate.Parsed, [.. live.Select(v => (v.Version, v.Schema.Parsed))]);
            if (problems.Count > 0)
                throw new RegistryException(409, RegistryErrorCodes.IncompatibleSchema,
                    $"Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{string.Join("; ", problems)}]");
            return AddVersion(subject, Intern(candidate));
        }
    }

    public SubjectVersionBody Lookup(string subject, SchemaRequest? request, bool includeDeleted)
    {
        lock (_gate)
        {
            var visible = Live(subject, includeDeleted);
            if (visible.Count == 0) throw RegistryErrorCodes.SubjectNotFoundError(subject);
            var candidate = Candidate(request);
            var match = visible.Where(v => v.Schema.Identity == candidate.Identity).OrderBy(v => v.Deleted).ThenBy(v => v.Version).FirstOrDefault()
                        ?? throw RegistryErrorCodes.SchemaNotFoundError();
            return Body(subject, match);
        }
    }

    public SchemaByIdBody GetById(int id)
    {
        lock (_gate)
        {
            var schema = Existing(id);
            return new SchemaByIdBody { Schema = schema.Text, References = NullIfEmpty(schema.References) };
        }
    }

    public string GetTextById(int id)
    {
        lock (_gate) return Existing(id).Text;
    }

    public List<SubjectVersionRef> VersionsOfId(int id, bool includeDeleted)
    {
        lock (_gate)
        {
            Existing(id);
            return [.. UsesOf(id, includeDeleted).Select(u => new SubjectVersionRef { Subject = u.Subject, Version = u.Version.Version })];
        }
    }

    public List<string> SubjectsOfId(int id, bool includeDeleted)
    {
        lock (_gate)
        {
            Existing(id);
            return [.. UsesOf(id, includeDeleted).Select(u => u.Subject).Distinct()];
        }
    }

    public List<string> Subjects(string? prefix, bool includeDeleted)
    {
        lock (_gate)
            return [.. _subjects.Where(s => s.Key.StartsWith(prefix ?? "", StringComparison.Ordinal) && s.Value.Versions.Any(v => includeDeleted || !v.Deleted))
                .Select(s => s.Key)];
    }

    public List<int> Versions(string subject, bool includeDeleted)
    {
        lock (_gate)
        {
            var visible = Live(subject, includeDeleted);
            if (visible.Count == 0) throw RegistryErrorCodes.SubjectNotFoundError(subject);
            return [.. visible.Select(v => v.Version)];
        }
    }

    public SubjectVersionBody GetVersion(string subject, string version, bool includeDeleted)
    {
        lock (_gate) return Body(subject, Find(subject, version, includeDeleted));
    }

    public List<int> ReferencedBy(string subject, string version)
    {
        lock (_gate)
        {
            var v = Find(subject, version, includeDeleted: false);
            return [.. Referrers(subject, v.Version, includeDeleted: false).Select(r => r.Schema.Id).Distinct().Order()];
        }
    }

    /// <summary>
    /// A compatibility check under the subject's level: against one version (<paramref name="version"/>), or with
    /// null, against the versions the level covers (the latest, or every live version for a transitive level).
    /// </summary>
    public CompatibilityCheckBody CheckCompatibility(string subject, string? version, SchemaRequest? request, bool verbose)
    {
        lock (_gate)
        {
            List<(int, AvroSchema)> against;
            if (version is null)
            {
                var live = Live(subject, includeDeleted: false);
                if (live.Count == 0) throw RegistryErrorCodes.SubjectNotFoundError(subject);
                against = [.. live.Select(v => (v.Version, v.Schema.Parsed))];
            }
            else
            {
                var v = Find(subject, version, includeDeleted: false);
                against = [(v.Version, v.Schema.Parsed)];
            }
            var problems = AvroCompatibility.Check(Level(subject), Candidate(request).Parsed, against);
            return new CompatibilityCheckBody { IsCompatible = problems.Count == 0, Messages = verbose ? problems : null };
        }
    }

    public ConfigBody GlobalConfig()
    {
        lock (_gate) return new ConfigBody { CompatibilityLevel = AvroCompatibility.Name(_compatibility) };
    }

    public ConfigUpdateBody SetGlobalConfig(ConfigUpdateBody? request)
    {
        var level = AvroCompatibility.Parse(request?.Compatibility);
        lock (_gate) _compatibility = level;
        return new ConfigUpdateBody { Compatibility = AvroCompatibility.Name(level) };
    }

    public ConfigBody ResetGlobalConfig()
    {
        lock (_gate)
        {
            var previous = _compatibility;
            _compatibility = CompatibilityLevel.Backward;
            return new ConfigBody { CompatibilityLevel = AvroCompatibility.Name(previous) };
        }
    }

    public ConfigBody SubjectConfig(string subject, bool defaultToGlobal)
    {
        lock (_gate)
        {
            var own = _subjects.GetValueOrDefault(subject)?.Compatibility;
            if (own is null && !defaultToGlobal) throw RegistryErrorCodes.CompatibilityNotConfiguredError(subject);
            return new ConfigBody { CompatibilityLevel = AvroCompatibility.Name(own ?? _compatibility) };
        }
    }

    public ConfigUpdateBody SetSubjectConfig(string subject, ConfigUpdateBody? request)
    {
        var level = AvroCompatibility.Parse(request?.Compatibility);
        lock (_gate) State(subject).Compatibility = level;
        return new ConfigUpdateBody { Compatibility = AvroCompatibility.Name(level) };
    }

    public ConfigBody DeleteSubjectConfig(string subject)
    {
        lock (_gate)
        {
            var state = _subjects.GetValueOrDefault(subject);
            if (state?.Compatibility is not { } previous) throw RegistryErrorCodes.SubjectNotFoundError(subject);
            state.Compatibility = null;
            DropIfEmpty(subject, state);
            return new ConfigBody { CompatibilityLevel = AvroCompatibility.Name(previous) };
        }
    }

    public ModeBody GlobalMode()
    {
        lock (_gate) return new ModeBody { Mode = _mode };
    }

    public ModeBody SetGlobalMode(ModeBody? request)
    {
        var mode = ParseMode(request?.Mode);
        lock (_gate) _mode = mode;
        return new ModeBody { Mode = mode };
    }

    public ModeBody SubjectMode(string subject, bool defaultToGlobal)
    {
        lock (_gate)
        {
            var own = _subjects.GetValueOrDefault(subject)?.Mode;
            if (own is null && !defaultToGlobal) throw RegistryErrorCodes.ModeNotConfiguredError(subject);
            return new ModeBody { Mode = own ?? _mode };
        }
    }

    public ModeBody SetSubjectMode(string subject, ModeBody? request)
    {
        var mode = ParseMode(request?.Mode);
        lock (_gate) State(subject).Mode = mode;
        return new ModeBody { Mode = mode };
    }

    public ModeBody DeleteSubjectMode(string subject)
    {
        lock (_gate)
        {
            var state = _subjects.GetValueOrDefault(subject);
            if (state?.Mode is not { } previous) throw RegistryErrorCodes.SubjectNotFoundError(subject);
            state.Mode = null;
            DropIfEmpty(subject, state);
            return new ModeBody { Mode = previous };
        }
    }

    /// <summary>
    /// Soft delete: hides every live version (and drops the subject's own compatibility level and mode, as Confluent
    /// does). Permanent: removes versions already soft-deleted. Either way the deleted version numbers are returned.
    /// </summary>
    public List<int> DeleteSubject(string subject, bool permanent)
    {
        lock (_gate)
        {
            EnsureWritable(subject);
            var state = _subjects.GetValueOrDefault(subject);
            if (state is null || state.Versions.Count == 0) throw RegistryErrorCodes.SubjectNotFoundError(subject);
            if (permanent)
            {
                if (state.Versions.Any(v => !v.Deleted)) throw RegistryErrorCodes.SubjectNotSoftDeletedError(subject);
                foreach (var v in state.Versions) EnsureUnreferenced(subject, v.Version, includeDeleted: true);
                var removed = state.Versions.Select(v => v.Version).ToList();
                _subjects.Remove(subject);
                return removed;
            }
            var live = state.Versions.Where(v => !v.Deleted).ToList();
            if (live.Count == 0) throw RegistryErrorCodes.SubjectSoftDeletedError(subject);
            foreach (var v in live) EnsureUnreferenced(subject, v.Version, includeDeleted: false);
            foreach (var v in live) v.Deleted = true;
            state.Compatibility = null;
            state.Mode = null;
            return [.. live.Select(v => v.Version)];
        }
    }

    public int DeleteVersion(string subject, string version, bool permanent)
    {
        lock (_gate)
        {
            EnsureWritable(subject);
            var number = ParseVersion(version);
            var state = _subjects.GetValueOrDefault(subject);
            if (state is null || state.Versions.Count == 0) throw RegistryErrorCodes.SubjectNotFoundError(subject);
            var target = number == -1
                ? state.Versions.LastOrDefault(v => permanent || !v.Deleted)
                : state.Versions.FirstOrDefault(v => v.Version == number);
            if (target is null) throw RegistryErrorCodes.VersionNotFoundError(number);
            if (permanent)
            {
                if (!target.Deleted) throw RegistryErrorCodes.VersionNotSoftDeletedError(subject, target.Version);
                EnsureUnreferenced(subject, target.Version, includeDeleted: true);
                state.Versions.Remove(target);
                DropIfEmpty(subject, state);
            }
            else
            {
                if (target.Deleted) throw RegistryErrorCodes.VersionSoftDeletedError(subject, target.Version);
                EnsureUnreferenced(subject, target.Version, includeDeleted: false);
                target.Deleted = true;
            }
            return target.Version;
        }
    }

    private sealed record CandidateSchema(string Text, string Identity, AvroSchema Parsed, List<SchemaReferenceBody> References);

    private CandidateSchema Candidate(SchemaRequest? request)
    {
        if (request is null || string.IsNullOrWhiteSpace(request.Schema)) throw RegistryErrorCodes.InvalidSchemaError("Empty schema");
        if (request.SchemaType is { } type && !string.Equals(type, "AVRO", StringComparison.OrdinalIgnoreCase))
            throw RegistryErrorCodes.InvalidSchemaError($"Schema type {type} is not supported by the dev registry (AVRO only)");
        if (HasContent(request.Metadata) || HasContent(request.RuleSet))
            throw RegistryErrorCodes.InvalidSchemaError("Schema metadata and rule sets (data contracts) are not supported by the dev registry");
        return Candidate(request.Schema, request.References);
    }

    /// <summary>
    /// Parses <paramref name="text"/> with the named types of its references known. Identity: Apache.Avro's
    /// <c>Schema.ToString()</c> of the parsed schema (whitespace and attribute order do not matter) plus the
    /// references; the registry answers with that form, or for a schema with references, with its compact JSON
    /// (ToString would inline the referenced types).
    /// </summary>
    private CandidateSchema Candidate(string text, List<SchemaReferenceBody>? references)
    {
        var refs = references ?? [];
        var names = new SchemaNames();
        foreach (var reference in refs)
        {
            var target = _subjects.GetValueOrDefault(reference.Subject)?.Versions.FirstOrDefault(v => v.Version == reference.Version)
                         ?? throw RegistryErrorCodes.InvalidSchemaError(
                             $"Invalid schema: reference '{reference.Name}' to subject '{reference.Subject}' version {reference.Version} does not exist");
            AddNamedTypes(target.Schema.Parsed, names);
        }
        AvroSchema parsed;
        try
        {
            parsed = refs.Count == 0 ? AvroSchema.Parse(text) : AvroSchema.Parse(text, names);
        }
        catch (Exception e) when (e is AvroException or Newtonsoft.Json.JsonException)
        {
            throw RegistryErrorCodes.InvalidSchemaError($"Invalid schema: {e.Message}");
        }
        var canonical = parsed.ToString();
        if (refs.Count == 0) return new CandidateSchema(canonical, canonical, parsed, refs);
        var identity = canonical + "\n" + string.Join("\n", refs.Select(r => $"{r.Name}|{r.Subject}|{r.Version}"));
        return new CandidateSchema(Compact(text), identity, parsed, refs);
    }

    private static string Compact(string json)
    {
        try
        {
            return JsonNode.Parse(json)?.ToJsonString(RegistryJson.Wire.Options) ?? json;
        }
        catch (JsonException)
        {
            return json.Trim();
        }
    }

    private static void AddNamedTypes(AvroSchema schema, SchemaNames names)
    {
        switch (schema)
        {
            case NamedSchema named when names.Contains(named.SchemaName):
                return;
            case RecordSchema record:
                names.Add(record);
                foreach (var field in record.Fields) AddNamedTypes(field.Schema, names);
                return;
            case NamedSchema named:
                names.Add(named);
                return;
            case ArraySchema array:
                AddNamedTypes(array.ItemSchema, names);
                return;
            case MapSchema map:
                AddNamedTypes(map.ValueSchema, names);
                return;
            case UnionSchema union:
                foreach (var branch in union.Schemas) AddNamedTypes(branch, names);
                return;
            case LogicalSchema logical:
                AddNamedTypes(logical.BaseSchema, names);
                return;
        }
    }

    private static bool HasContent(JsonElement? element) => element is { } e && e.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => false,
        JsonValueKind.Object => e.EnumerateObject().Any(p => p.Value.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)),
        JsonValueKind.Array => e.GetArrayLength() > 0,
        _ => true,
    };

    /// <summary>The stored schema with this identity, or a new one under the next id. Ids are never reused.</summary>
    private StoredSchema Intern(CandidateSchema candidate)
    {
        if (_byIdentity.TryGetValue(candidate.Identity, out var existing)) return existing;
        var stored = new StoredSchema(_nextId++, candidate.Text, candidate.Identity, candidate.Parsed, candidate.References);
        _byId[stored.Id] = stored;
        _byIdentity[stored.Identity] = stored;
        return stored;
    }

    private int AddVersion(string subject, StoredSchema schema)
    {
        var state = State(subject);
        var version = state.Versions.Count == 0 ? 1 : state.Versions.Max(v => v.Version) + 1;
        state.Versions.Add(new SubjectVersion(version, schema));
        return schema.Id;
    }

    private SubjectState State(string subject)
    {
        if (!_subjects.TryGetValue(subject, out var state)) _subjects[subject] = state = new SubjectState();
        return state;
    }

    private void DropIfEmpty(string subject, SubjectState state)
    {
        if (state.IsEmpty) _subjects.Remove(subject);
    }

    private List<SubjectVersion> Live(string subject, bool includeDeleted) =>
        _subjects.TryGetValue(subject, out var state) ? [.. state.Versions.Where(v => includeDeleted || !v.Deleted)] : [];

    private CompatibilityLevel Level(string subject) => _subjects.GetValueOrDefault(subject)?.Compatibility ?? _compatibility;

    private void EnsureWritable(string subject)
    {
        var mode = _subjects.GetValueOrDefault(subject)?.Mode ?? _mode;
        if (mode != ReadWrite) throw RegistryErrorCodes.ReadOnlyError(subject);
    }

    /// <summary>A schema id some version (live or soft-deleted) still uses; 40403 otherwise.</summary>
    private StoredSchema Existing(int id) =>
        _byId.TryGetValue(id, out var schema) && UsesOf(id, includeDeleted: true).Any() ? schema : throw RegistryErrorCodes.SchemaNotFoundError(id);

    private IEnumerable<(string Subject, SubjectVersion Version)> UsesOf(int id, bool includeDeleted) =>
        _subjects.SelectMany(s => s.Value.Versions.Where(v => v.Schema.Id == id && (includeDeleted || !v.Deleted)).Select(v => (s.Key, v)));

    private IEnumerable<SubjectVersion> Referrers(string subject, int version, bool includeDeleted) =>
        _subjects.Values.SelectMany(s => s.Versions).Where(v => (includeDeleted || !v.Deleted)
            && v.Schema.References.Any(r => r.Subject == subject && r.Version == version));

    private void EnsureUnreferenced(string subject, int version, bool includeDeleted)
    {
        if (Referrers(subject, version, includeDeleted).Any()) throw RegistryErrorCodes.ReferenceExistsError(subject, version);
    }

    /// <summary>A version number, or -1 for "latest"/"-1"; 42202 for anything else.</summary>
    private static int ParseVersion(string version)
    {
        if (version == "latest") return -1;
        return int.TryParse(version, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var v) && (v >= 1 || v == -1)
            ? v
            : throw RegistryErrorCodes.InvalidVersionError(version);
    }

    private SubjectVersion Find(string subject, string version, bool includeDeleted)
    {
        var number = ParseVersion(version);
        var visible = Live(subject, includeDeleted);
        if (visible.Count == 0) throw RegistryErrorCodes.SubjectNotFoundError(subject);
        return (number == -1 ? visible[^1] : visible.FirstOrDefault(v => v.Version == number)) ?? throw RegistryErrorCodes.VersionNotFoundError(number);
    }

    private static SubjectVersionBody Body(string subject, SubjectVersion v) => new()
    {
        Subject = subject,
        Version = v.Version,
        Id = v.Schema.Id,
        Schema = v.Schema.Text,
        References = NullIfEmpty(v.Schema.References),
    };

    private static List<SchemaReferenceBody>? NullIfEmpty(List<SchemaReferenceBody> references) => references.Count == 0 ? null : references;

    private static string ParseMode(string? mode)
    {
        foreach (var m in Modes)
            if (string.Equals(m, mode, StringComparison.OrdinalIgnoreCase)) return m;
        throw RegistryErrorCodes.InvalidModeError(mode);
    }
}
