using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace StreamInference.Core.Features;

/// <summary>Thrown for a feature definition that cannot be used; the message names the file and the feature.</summary>
public sealed class FeatureDefinitionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Parses, validates and compiles feature-set definitions.</summary>
public static class FeatureSetLoader
{
    private static readonly IDeserializer Yaml = new DeserializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .Build();

    public static FeaturePlan LoadFile(string path)
    {
        if (!File.Exists(path))
            throw new FeatureDefinitionException($"Feature definition file '{path}' does not exist.");
        return Parse(File.ReadAllText(path), path);
    }

    public static FeaturePlan Parse(string yaml, string sourceName = "<inline>")
    {
        FeatureSetDocument? doc;
        try
        {
            doc = Yaml.Deserialize<FeatureSetDocument>(yaml);
        }
        catch (YamlException e)
        {
            throw new FeatureDefinitionException(
                $"{sourceName}: line {e.Start.Line}, column {e.Start.Column}: {e.InnerException?.Message ?? e.Message}", e);
        }
        if (doc is null) throw new FeatureDefinitionException($"{sourceName}: the document is empty.");
        return Compile(doc, sourceName);
    }

    public static FeaturePlan Compile(FeatureSetDocument doc, string sourceName)
    {
        var errors = new List<string>();
        void Error(string message) => errors.Add($"{sourceName}: {message}");

        if (string.IsNullOrWhiteSpace(doc.FeatureSet)) Error("'featureSet' (the feature-set name) is required.");
        if (doc.Version < 1) Error("'version' must be a positive integer.");
        var ev = doc.Event;
        if (ev is null || string.IsNullOrWhiteSpace(ev.IdField) || string.IsNullOrWhiteSpace(ev.EntityKeyField) || string.IsNullOrWhiteSpace(ev.TimeField))
            Error("'event' must name idField, entityKeyField and timeField.");
        if (doc.Features.Count == 0) Error("'features' must list at least one feature.");

        var numeric = new List<EventFieldSpec>();
        var text = new List<EventFieldSpec>();
        var kinds = new Dictionary<string, EventFieldKind>(StringComparer.Ordinal);

        int SlotFor(string field, EventFieldKind kind, string user)
        {
            if (kinds.TryGetValue(field, out var existing) && existing != kind)
            {
                Error($"{user}: event field '{field}' is used as {kind} but elsewhere as {existing}.");
                return 0;
            }
            kinds[field] = kind;
            var list = kind == EventFieldKind.Text ? text : numeric;
            foreach (var f in list)
                if (f.Name == field) return f.Slot;
            var spec = new EventFieldSpec(field, kind, list.Count);
            list.Add(spec);
            return spec.Slot;
        }

        var lookups = new List<LookupSpec>();
        var lookupValueCount = 0;
        for (var i = 0; i < doc.Lookups.Count; i++)
        {
            var l = doc.Lookups[i];
            var where = $"lookup #{i + 1} '{l.Name}'";
            if (string.IsNullOrWhiteSpace(l.Name)) { Error($"lookup #{i + 1}: 'name' is required."); continue; }
            if (lookups.Exists(x => x.Name == l.Name)) Error($"{where}: duplicate lookup name.");
            if (string.IsNullOrWhiteSpace(l.EntityField)) { Error($"{where}: 'entityField' is required."); continue; }
            if (l.Fields.Count == 0) Error($"{where}: 'fields' must list at least one hash field.");
            var slot = SlotFor(l.EntityField, EventFieldKind.Text, where);
            lookups.Add(new LookupSpec(l.Name, l.EntityField, slot, l.Fields.ToArray(), lookupValueCount));
            lookupValueCount += l.Fields.Count;
        }

        var features = new List<FeatureSpec>();
        for (var i = 0; i < doc.Features.Count; i++)
        {
            var f = doc.Features[i];
            var where = $"feature #{i + 1} '{f.Name}'";
            if (string.IsNullOrWhiteSpace(f.Name)) { Error($"feature #{i + 1}: 'name' is required."); continue; }
            if (features.Exists(x => x.Name == f.Name)) Error($"{where}: duplicate feature name.");
            if ((f.Event is null) == (f.Lookup is null)) { Error($"{where}: set exactly one of 'event' or 'lookup'."); continue; }

            if (!TryParseTransform(f.Transform, out var transform, out var arg, out var min, out var max, out var why))
            {
                Error($"{where}: {why}");
                continue;
            }
            FeatureSourceKind source;
            int slot;
            if (f.Event is not null)
            {
                source = FeatureSourceKind.Event;
                var kind = transform switch
                {
                    TransformKind.EqualsText => EventFieldKind.Text,
                    TransformKind.HourOfDay or TransformKind.DayOfWeek => EventFieldKind.Timestamp,
                    _ => EventFieldKind.Numeric,
                };
                slot = SlotFor(f.Event, kind, where);
            }
            else
            {
                source = FeatureSourceKind.Lookup;
                if (transform is TransformKind.EqualsText or TransformKind.HourOfDay or TransformKind.DayOfWeek)
                {
                    Error($"{where}: transform '{f.Transform}' applies to event fields only.");
                    continue;
                }
                var dot = f.Lookup!.IndexOf('.');
                var lookupName = dot > 0 ? f.Lookup[..dot] : "";
                var field = dot > 0 ? f.Lookup[(dot + 1)..] : "";
                var lookup = lookups.Find(x => x.Name == lookupName);
                if (lookup is null) { Error($"{where}: lookup '{f.Lookup}' must be 'lookupName.field' of a declared lookup."); continue; }
                var fieldIndex = -1;
                for (var j = 0; j < lookup.Fields.Count; j++)
                    if (lookup.Fields[j] == field) fieldIndex = j;
                if (fieldIndex < 0) { Error($"{where}: lookup '{lookupName}' does not list field '{field}'."); continue; }
                slot = lookup.FirstValueSlot + fieldIndex;
            }
            var def = f.Default ?? 0.0;
            if (!double.IsFinite(def)) Error($"{where}: 'default' must be a finite number.");
            features.Add(new FeatureSpec(f.Name, features.Count, source, slot, transform, arg, min, max, (float)def));
        }

        if (errors.Count > 0)
            throw new FeatureDefinitionException(string.Join(Environment.NewLine, errors));

        SlotFor(ev!.EntityKeyField!, EventFieldKind.Text, "event.entityKeyField");
        return new FeaturePlan
        {
            Name = doc.FeatureSet!,
            Version = doc.Version,
            IdField = ev.IdField!,
            EntityKeyField = ev.EntityKeyField!,
            TimeField = ev.TimeField!,
            NumericFields = numeric,
            TextFields = text,
            Lookups = lookups,
            Features = features,
            LookupValueCount = lookupValueCount,
        };
    }

    private static bool TryParseTransform(string? text, out TransformKind kind, out string? arg, out double min, out double max, out string why)
    {
        kind = TransformKind.Identity;
        arg = null;
        min = double.NegativeInfinity;
        max = double.PositiveInfinity;
        why = "";
        var t = text?.Trim();
        if (string.IsNullOrEmpty(t) || t == "identity") return true;
        switch (t)
        {
            case "log1p": kind = TransformKind.Log1p; return true;
            case "hour_of_day": kind = TransformKind.HourOfDay; return true;
            case "day_of_week": kind = TransformKind.DayOfWeek; return true;
        }
        var open = t.IndexOf('(');
        if (open > 0 && t.EndsWith(')'))
        {
            var name = t[..open];
            var inner = t[(open + 1)..^1];
            if (name == "equals" && inner.Length > 0)
            {
                kind = TransformKind.EqualsText;
                arg = inner;
                return true;
            }
            if (name == "clip")
            {
                var parts = inner.Split(',');
                if (parts.Length == 2
                    && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out min)
                    && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out max)
                    && min <= max)
                {
                    kind = TransformKind.Clip;
                    return true;
                }
                why = $"transform '{t}' must be clip(MIN,MAX) with MIN <= MAX.";
                return false;
            }
        }
        why = $"unknown transform '{t}' (expected identity, log1p, hour_of_day, day_of_week, equals(VALUE) or clip(MIN,MAX)).";
        return false;
    }
}
