using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace StreamInference.Core.Features;

/// <summary>Thrown for a feature definition that cannot be used; the message names the file, line and feature.</summary>
public sealed class FeatureDefinitionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Parses, validates and compiles feature-set definitions. Every problem found is reported, not just the first.</summary>
public static class FeatureSetLoader
{
    /// <summary>Windows longer than this many buckets are refused (state size per entity).</summary>
    public const int MaxBucketsPerWindow = 10_000;
    public const long DefaultAllowedLatenessMs = 60_000;

    public static FeaturePlan LoadFile(string path)
    {
        if (!File.Exists(path))
            throw new FeatureDefinitionException($"Feature definition file '{path}' does not exist.");
        return Parse(File.ReadAllText(path), path);
    }

    public static FeaturePlan Parse(string yaml, string sourceName = "<inline>")
    {
        var doc = YamlFiles.Deserialize<FeatureSetDocument>(yaml, sourceName, (message, e) => new FeatureDefinitionException(message, e));
        if (doc is null) throw new FeatureDefinitionException($"{sourceName}: the document is empty.");
        return Compile(doc, sourceName, ItemLines(yaml));
    }

    /// <summary>1-based line of each item of the top-level 'features' and 'lookups' sequences.</summary>
    private static Dictionary<string, int[]> ItemLines(string yaml)
    {
        var lines = new Dictionary<string, int[]>();
        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(yaml));
            if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root) return lines;
            foreach (var (key, value) in root.Children)
                if (key is YamlScalarNode { Value: { } name } && value is YamlSequenceNode seq)
                    lines[name] = seq.Children.Select(c => (int)c.Start.Line).ToArray();
        }
        catch (YamlException)
        {
            // Already parsed once; line numbers are a convenience.
        }
        return lines;
    }

    /// <summary>Column names of training sets (and reserved prefixes) that a feature may not take.</summary>
    public static readonly string[] ReservedFeatureNames = ["event_id", "event_time_ms", "entity_key", "label"];

    public static FeaturePlan Compile(FeatureSetDocument doc, string sourceName, IReadOnlyDictionary<string, int[]>? lines = null)
    {
        var errors = new List<string>();
        // Empty sections and empty list items deserialize as null.
        doc.Lookups ??= [];
        doc.Features ??= [];
        if (doc.Lookups.Any(l => l is null) || doc.Features.Any(f => f is null))
            throw new FeatureDefinitionException($"{sourceName}: 'lookups' and 'features' must not contain empty items.");
        foreach (var l in doc.Lookups)
        {
            l.Fields ??= [];
            if (l.Fields.Any(f => f is null)) throw new FeatureDefinitionException($"{sourceName}: lookup '{l.Name}': 'fields' must not contain empty items.");
        }
        int LineOf(string section, int i) => lines is not null && lines.TryGetValue(section, out var l) && i < l.Length ? l[i] : 0;
        string At(string section, int i) { var l = LineOf(section, i); return l > 0 ? $"{sourceName}:{l}" : sourceName; }
        void Error(string message) => errors.Add($"{sourceName}: {message}");

        if (string.IsNullOrWhiteSpace(doc.FeatureSet)) Error("'featureSet' (the feature-set name) is required.");
        if (doc.Version < 1) Error("'version' must be a positive integer.");
        var ev = doc.Event;
        if (ev is null || string.IsNullOrWhiteSpace(ev.IdField) || string.IsNullOrWhiteSpace(ev.EntityKeyField) || string.IsNullOrWhiteSpace(ev.TimeField))
            Error("'event' must name idField, entityKeyField and timeField.");
        var lateness = DefaultAllowedLatenessMs;
        if (ev?.AllowedLateness is not null && !Durations.TryParseMillis(ev.AllowedLateness, out lateness))
            Error($"event.allowedLateness '{ev.AllowedLateness}' is not a duration (e.g. 30s, 2m).");
        if (doc.Features.Count == 0) Error("'features' must list at least one feature.");

        string? labelField = null;
        long labelKnownAfter = 0;
        if (doc.Label is not null)
        {
            labelField = doc.Label.Field;
            if (string.IsNullOrWhiteSpace(labelField)) Error("label.field is required when 'label' is present.");
            if (doc.Label.KnownAfter is not null && !Durations.TryParseMillis(doc.Label.KnownAfter, out labelKnownAfter))
                Error($"label.knownAfter '{doc.Label.KnownAfter}' is not a duration (e.g. 2d).");
        }

        var numeric = new List<EventFieldSpec>();
        var text = new List<EventFieldSpec>();
        var kinds = new Dictionary<string, EventFieldKind>(StringComparer.Ordinal);
        var batchOnly = new List<string>();

        int SlotFor(string field, EventFieldKind kind, string user)
        {
            if (field == labelField)
            {
                errors.Add($"{user}: '{field}' is the label; the live event does not carry it.");
                return 0;
            }
            var asText = kind == EventFieldKind.Text;
            if (kinds.TryGetValue(field, out var existing) && (existing == EventFieldKind.Text) != asText)
            {
                errors.Add($"{user}: event field '{field}' is used as {kind} but elsewhere as {existing}.");
                return 0;
            }
            if (!kinds.ContainsKey(field) || kind == EventFieldKind.Timestamp) kinds[field] = kind;
            var list = asText ? text : numeric;
            for (var i = 0; i < list.Count; i++)
            {
                if (list[i].Name != field) continue;
                if (kind == EventFieldKind.Timestamp) list[i] = list[i] with { Kind = kind };
                return list[i].Slot;
            }
            var spec = new EventFieldSpec(field, kind, list.Count);
            list.Add(spec);
            return spec.Slot;
        }

        var lookups = new List<LookupSpec>();
        var lookupValueCount = 0;
        for (var i = 0; i < doc.Lookups.Count; i++)
        {
            var l = doc.Lookups[i];
            var where = $"{At("lookups", i)}: lookup '{l.Name}'";
            if (string.IsNullOrWhiteSpace(l.Name)) { errors.Add($"{At("lookups", i)}: lookup #{i + 1}: 'name' is required."); continue; }
            if (lookups.Exists(x => x.Name == l.Name)) errors.Add($"{where}: duplicate lookup name.");
            if (string.IsNullOrWhiteSpace(l.EntityField)) { errors.Add($"{where}: 'entityField' is required."); continue; }
            if (!Durations.TryParseMillis(l.Ttl, out var ttl) || ttl <= 0)
                errors.Add($"{where}: 'ttl' is required (a duration such as 2d): values older than it are stale.");
            if (!Durations.TryParseMillis(l.Refresh, out var refresh) || refresh <= 0)
                errors.Add($"{where}: 'refresh' is required (a duration such as 1d): how often the batch path recomputes the values.");
            if (l.Fields.Count == 0) errors.Add($"{where}: 'fields' must list at least one field.");
            var defs = new List<LookupFieldSpec>();
            foreach (var f in l.Fields)
            {
                var fw = $"{where}, field '{f.Name}'";
                if (string.IsNullOrWhiteSpace(f.Name)) { errors.Add($"{where}: every field needs a 'name'."); continue; }
                if (defs.Exists(d => d.Name == f.Name)) errors.Add($"{fw}: duplicate field name.");
                if (f.Name.StartsWith('_')) errors.Add($"{fw}: names starting with '_' are reserved.");
                if (!TryParseFunction(f.Function, out var fn)) { errors.Add($"{fw}: 'function' must be one of count, sum, mean, min, max (got '{f.Function}')."); continue; }
                if (fn != AggregateFunction.Count && string.IsNullOrWhiteSpace(f.Of)) { errors.Add($"{fw}: '{f.Function}' needs 'of' (the field aggregated)."); continue; }
                if (!TryWindow(f.Window, f.Bucket, fw, errors, out var windowMs, out var bucketMs)) continue;
                var ofLabel = f.Of is not null && f.Of == labelField;
                if (f.Of is not null && !ofLabel && !batchOnly.Contains(f.Of)) batchOnly.Add(f.Of);
                defs.Add(new LookupFieldSpec(f.Name, fn, f.Of, ofLabel, windowMs, bucketMs));
            }
            var slot = SlotFor(l.EntityField, EventFieldKind.Text, where);
            lookups.Add(new LookupSpec(l.Name, l.EntityField, slot, defs.Select(d => d.Name).ToArray(), lookupValueCount, ttl, refresh, defs));
            lookupValueCount += defs.Count;
        }

        var series = new List<SeriesSpec>();
        var windows = new List<WindowSpec>();
        var features = new List<FeatureSpec>();
        for (var i = 0; i < doc.Features.Count; i++)
        {
            var f = doc.Features[i];
            var line = LineOf("features", i);
            var where = $"{At("features", i)}: feature '{f.Name}'";
            if (string.IsNullOrWhiteSpace(f.Name)) { errors.Add($"{At("features", i)}: feature #{i + 1}: 'name' is required."); continue; }
            if (doc.Features.Take(i).Any(x => x?.Name == f.Name))
                errors.Add($"{where}: duplicate feature name (model input columns must be unique).");
            if (f.Name.StartsWith('_') || ReservedFeatureNames.Contains(f.Name))
                errors.Add($"{where}: the name is reserved (training sets use {string.Join(", ", ReservedFeatureNames)} and names starting with '_').");
            var sources = (f.Event is null ? 0 : 1) + (f.Window is null ? 0 : 1) + (f.Lookup is null ? 0 : 1);
            if (sources != 1) { errors.Add($"{where}: set exactly one of 'event', 'window' or 'lookup'."); continue; }
            if (f.Default is null) errors.Add($"{where}: 'default' is required (the value used when the input is missing or stale).");
            if (!TryParseTransform(f.Transform, out var t, out var why)) { errors.Add($"{where}: {why}"); continue; }

            FeatureSourceKind source;
            int slot;
            if (f.Event is not null)
            {
                source = FeatureSourceKind.Event;
                var kind = t.Kind switch
                {
                    TransformKind.EqualsText or TransformKind.IndexText => EventFieldKind.Text,
                    TransformKind.HourOfDay or TransformKind.DayOfWeek => EventFieldKind.Timestamp,
                    _ => EventFieldKind.Numeric,
                };
                slot = SlotFor(f.Event, kind, where);
            }
            else if (t.Kind is TransformKind.EqualsText or TransformKind.IndexText or TransformKind.HourOfDay or TransformKind.DayOfWeek)
            {
                errors.Add($"{where}: transform '{f.Transform}' applies to event fields only.");
                continue;
            }
            else if (f.Window is { } w)
            {
                source = FeatureSourceKind.Window;
                if (!TryParseFunction(w.Function, out var fn)) { errors.Add($"{where}: window 'function' must be one of count, sum, mean, min, max (got '{w.Function}')."); continue; }
                if (string.IsNullOrWhiteSpace(w.Size)) { errors.Add($"{where}: window needs a 'size' (e.g. 10m, 1h, 30d)."); continue; }
                if (fn != AggregateFunction.Count && string.IsNullOrWhiteSpace(w.Of)) { errors.Add($"{where}: window '{w.Function}' needs 'of' (the event field aggregated)."); continue; }
                if (w.Entity is not null && ev?.EntityKeyField is not null && w.Entity != ev.EntityKeyField)
                {
                    errors.Add($"{where}: windows are kept per '{ev.EntityKeyField}' (the message key, so one consumer sees all of an entity's events in order); " +
                               $"aggregate '{w.Entity}' in the batch path and read it as a lookup.");
                    continue;
                }
                if (!TryWindow(w.Size, w.Bucket, where, errors, out var sizeMs, out var bucketMs)) continue;
                var valueSlot = w.Of is null ? -1 : SlotFor(w.Of, EventFieldKind.Numeric, where);
                var seriesName = $"{w.Of ?? "*"}:{Durations.Format(bucketMs)}";
                var s = series.FindIndex(x => x.Name == seriesName);
                var buckets = (int)(sizeMs / bucketMs);
                if (s < 0)
                {
                    s = series.Count;
                    series.Add(new SeriesSpec(s, seriesName, w.Of, valueSlot, bucketMs, buckets));
                }
                else if (series[s].RetainBuckets < buckets)
                {
                    series[s] = series[s] with { RetainBuckets = buckets };
                }
                slot = windows.Count;
                windows.Add(new WindowSpec(slot, f.Name, fn, s, sizeMs, buckets));
            }
            else
            {
                source = FeatureSourceKind.Lookup;
                var dot = f.Lookup!.IndexOf('.');
                var lookupName = dot > 0 ? f.Lookup[..dot] : "";
                var field = dot > 0 ? f.Lookup[(dot + 1)..] : "";
                var lookup = lookups.Find(x => x.Name == lookupName);
                if (lookup is null) { errors.Add($"{where}: lookup '{f.Lookup}' must be 'lookupName.field' of a declared lookup."); continue; }
                var fieldIndex = -1;
                for (var j = 0; j < lookup.Fields.Count; j++)
                    if (lookup.Fields[j] == field) fieldIndex = j;
                if (fieldIndex < 0) { errors.Add($"{where}: lookup '{lookupName}' does not define field '{field}'."); continue; }
                slot = lookup.FirstValueSlot + fieldIndex;
            }

            var def = f.Default ?? 0.0;
            if (f.Default is not null && CheckDefault(t, def) is { } bad) errors.Add($"{where}: default {def.ToString(CultureInfo.InvariantCulture)} {bad}");
            features.Add(new FeatureSpec(f.Name, features.Count, source, slot, t.Kind, t.Text, t.Min, t.Max, (float)def)
            {
                Boundaries = t.Boundaries,
                Categories = t.Categories,
                Line = line,
            });
        }

        foreach (var b in batchOnly.ToArray())
            if (kinds.TryGetValue(b, out var k) && k == EventFieldKind.Text) errors.Add($"{sourceName}: lookup input '{b}' must be numeric (it is used as text).");

        var keySlot = ev?.EntityKeyField is { Length: > 0 } keyField ? SlotFor(keyField, EventFieldKind.Text, $"{sourceName}: event.entityKeyField") : 0;
        if (errors.Count > 0)
            throw new FeatureDefinitionException(string.Join(Environment.NewLine, errors));

        batchOnly.RemoveAll(b => numeric.Exists(n => n.Name == b));
        return new FeaturePlan
        {
            Name = doc.FeatureSet!,
            Version = doc.Version,
            IdField = ev!.IdField!,
            EntityKeyField = ev.EntityKeyField!,
            TimeField = ev.TimeField!,
            AllowedLatenessMs = lateness,
            LabelField = labelField,
            LabelKnownAfterMs = labelKnownAfter,
            NumericFields = numeric,
            TextFields = text,
            BatchOnlyFields = batchOnly,
            Series = series,
            Windows = windows,
            Lookups = lookups,
            Features = features,
            LookupValueCount = lookupValueCount,
            EntityKeySlot = keySlot,
        };
    }

    private static bool TryWindow(string? size, string? bucket, string where, List<string> errors, out long sizeMs, out long bucketMs)
    {
        bucketMs = 0;
        if (!Durations.TryParseMillis(size, out sizeMs) || sizeMs <= 0)
        {
            errors.Add(size is null ? $"{where}: window needs a size (e.g. 10m, 1h, 30d)." : $"{where}: window size '{size}' is not a positive duration (e.g. 10m, 1h, 30d).");
            return false;
        }
        if (bucket is null) bucketMs = sizeMs <= 3_600_000 ? 60_000 : sizeMs <= 86_400_000 ? 300_000 : 3_600_000;
        else if (!Durations.TryParseMillis(bucket, out bucketMs) || bucketMs <= 0)
        {
            errors.Add($"{where}: bucket '{bucket}' is not a positive duration.");
            return false;
        }
        if (sizeMs % bucketMs != 0)
        {
            errors.Add($"{where}: window {Durations.Format(sizeMs)} is not a whole number of {Durations.Format(bucketMs)} buckets.");
            return false;
        }
        if (sizeMs / bucketMs > MaxBucketsPerWindow)
        {
            errors.Add($"{where}: window {Durations.Format(sizeMs)} / bucket {Durations.Format(bucketMs)} = {sizeMs / bucketMs} buckets; at most {MaxBucketsPerWindow} (use a wider bucket).");
            return false;
        }
        return true;
    }

    private static bool TryParseFunction(string? text, out AggregateFunction fn)
    {
        switch (text?.Trim())
        {
            case "count": fn = AggregateFunction.Count; return true;
            case "sum": fn = AggregateFunction.Sum; return true;
            case "mean": fn = AggregateFunction.Mean; return true;
            case "min": fn = AggregateFunction.Min; return true;
            case "max": fn = AggregateFunction.Max; return true;
            default: fn = default; return false;
        }
    }

    private readonly record struct ParsedTransform(TransformKind Kind, string? Text, double Min, double Max, double[] Boundaries, string[] Categories);

    private static string? CheckDefault(ParsedTransform t, double d)
    {
        if (!double.IsFinite(d)) return "must be a finite number.";
        var integral = d == Math.Floor(d);
        return t.Kind switch
        {
            TransformKind.EqualsText when d is not (0 or 1) => "must be 0 or 1 (equals() is a one-hot column).",
            TransformKind.IndexText when !integral || d < -1 || d >= t.Categories.Length =>
                $"must be a category index in -1..{t.Categories.Length - 1} (index() yields integers).",
            TransformKind.Bucketize when !integral || d < 0 || d > t.Boundaries.Length =>
                $"must be a bucket number in 0..{t.Boundaries.Length} (bucketize() yields integers).",
            TransformKind.HourOfDay when !integral || d < 0 || d > 23 => "must be an hour 0..23.",
            TransformKind.DayOfWeek when !integral || d < 0 || d > 6 => "must be a day 0..6 (0 = Monday).",
            TransformKind.Clip when d < t.Min || d > t.Max => $"must lie inside clip({t.Min.ToString(CultureInfo.InvariantCulture)},{t.Max.ToString(CultureInfo.InvariantCulture)}).",
            _ => null,
        };
    }

    private static bool TryParseTransform(string? text, out ParsedTransform result, out string why)
    {
        result = new ParsedTransform(TransformKind.Identity, null, double.NegativeInfinity, double.PositiveInfinity, [], []);
        why = "";
        var t = text?.Trim();
        if (string.IsNullOrEmpty(t) || t == "identity") return true;
        switch (t)
        {
            case "log": result = result with { Kind = TransformKind.Log }; return true;
            case "log1p": result = result with { Kind = TransformKind.Log1p }; return true;
            case "hour_of_day": result = result with { Kind = TransformKind.HourOfDay }; return true;
            case "day_of_week": result = result with { Kind = TransformKind.DayOfWeek }; return true;
        }
        var open = t.IndexOf('(');
        if (open > 0 && t.EndsWith(')'))
        {
            var name = t[..open];
            var inner = t[(open + 1)..^1];
            var parts = inner.Split(',', StringSplitOptions.TrimEntries);
            switch (name)
            {
                case "equals" when inner.Length > 0:
                    result = result with { Kind = TransformKind.EqualsText, Text = inner };
                    return true;
                case "index":
                    if (parts.Length > 0 && parts.All(p => p.Length > 0) && parts.Distinct().Count() == parts.Length)
                    {
                        result = result with { Kind = TransformKind.IndexText, Categories = parts };
                        return true;
                    }
                    why = $"transform '{t}' must be index(A,B,...) with distinct, non-empty categories.";
                    return false;
                case "clip":
                    if (parts.Length == 2 && TryNumber(parts[0], out var min) && TryNumber(parts[1], out var max) && min <= max)
                    {
                        result = result with { Kind = TransformKind.Clip, Min = min, Max = max };
                        return true;
                    }
                    why = $"transform '{t}' must be clip(MIN,MAX) with MIN <= MAX.";
                    return false;
                case "bucketize":
                    var bounds = new double[parts.Length];
                    var ok = parts.Length > 0;
                    for (var i = 0; ok && i < parts.Length; i++)
                        ok = TryNumber(parts[i], out bounds[i]) && (i == 0 || bounds[i] > bounds[i - 1]);
                    if (ok)
                    {
                        result = result with { Kind = TransformKind.Bucketize, Boundaries = bounds };
                        return true;
                    }
                    why = $"transform '{t}' must be bucketize(B1,B2,...) with strictly increasing numbers.";
                    return false;
            }
        }
        why = $"unknown transform '{t}' (expected identity, log, log1p, clip(MIN,MAX), bucketize(B1,..), index(A,..), equals(VALUE), hour_of_day or day_of_week).";
        return false;
    }

    private static bool TryNumber(string s, out double value) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out value) && double.IsFinite(value);
}
