using Parquet;
using Parquet.Schema;
using StreamInference.Core.Features;

namespace StreamInference.Batch.History;

/// <summary>
/// Event histories as Parquet files: one column per event field the feature set reads (by name), the
/// label, and optional <c>_partition</c>/<c>_offset</c>. Rows are in arrival order. Numeric columns may be
/// double, float, int, long or boolean (nullable or not); the time column epoch milliseconds or a timestamp.
/// </summary>
public static class ParquetHistory
{
    public const string PartitionColumn = "_partition";
    public const string OffsetColumn = "_offset";

    public static async Task<EventHistory> ReadAsync(string path, FeaturePlan plan, IProgress<long>? progress = null, CancellationToken ct = default)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"History file '{path}' does not exist.", path);
        await using var stream = File.OpenRead(path);
        await using var reader = await ParquetReader.CreateAsync(stream, cancellationToken: ct).ConfigureAwait(false);
        var fields = reader.Schema.GetDataFields().ToDictionary(f => f.Name, StringComparer.Ordinal);
        var missing = new List<string>();
        DataField? Need(string name) { if (fields.TryGetValue(name, out var f)) return f; missing.Add(name); return null; }
        var idField = Need(plan.IdField);
        var timeField = Need(plan.TimeField);
        var numericFields = plan.NumericFields.Select(f => f.Name == plan.TimeField ? null : Need(f.Name)).ToArray();
        var textFields = plan.TextFields.Select(f => Need(f.Name)).ToArray();
        var batchOnlyFields = plan.BatchOnlyFields.Select(Need).ToArray();
        if (missing.Count > 0)
            throw new InvalidDataException($"{path}: the feature set '{plan.Name}' v{plan.Version} needs column(s) {string.Join(", ", missing)}; " +
                                           $"the file has {string.Join(", ", fields.Keys)}.");
        fields.TryGetValue(plan.LabelField ?? "", out var labelField);
        fields.TryGetValue(PartitionColumn, out var partitionField);
        fields.TryGetValue(OffsetColumn, out var offsetField);

        var history = new EventHistory(plan);
        var numerics = new double[plan.NumericFields.Count];
        var texts = new string?[plan.TextFields.Count];
        var batchOnly = new double[plan.BatchOnlyFields.Count];
        long done = 0;
        for (var g = 0; g < reader.RowGroupCount; g++)
        {
            using var rg = reader.OpenRowGroupReader(g);
            var n = (int)rg.RowCount;
            var ids = await ReadTextAsync(rg, idField!, n, ct).ConfigureAwait(false);
            var times = await ReadNumericAsync(rg, timeField!, n, ct).ConfigureAwait(false);
            var numericCols = new double[numericFields.Length][];
            for (var c = 0; c < numericFields.Length; c++)
                numericCols[c] = numericFields[c] is { } f ? await ReadNumericAsync(rg, f, n, ct).ConfigureAwait(false) : times;
            var textCols = new string?[textFields.Length][];
            for (var c = 0; c < textFields.Length; c++) textCols[c] = await ReadTextAsync(rg, textFields[c]!, n, ct).ConfigureAwait(false);
            var batchCols = new double[batchOnlyFields.Length][];
            for (var c = 0; c < batchOnlyFields.Length; c++) batchCols[c] = await ReadNumericAsync(rg, batchOnlyFields[c]!, n, ct).ConfigureAwait(false);
            var labels = labelField is null ? null : await ReadNumericAsync(rg, labelField, n, ct).ConfigureAwait(false);
            var partitions = partitionField is null ? null : await ReadNumericAsync(rg, partitionField, n, ct).ConfigureAwait(false);
            var offsets = offsetField is null ? null : await ReadNumericAsync(rg, offsetField, n, ct).ConfigureAwait(false);
            for (var i = 0; i < n; i++)
            {
                if (ids[i] is null || !double.IsFinite(times[i]) || textCols[plan.EntityKeySlot][i] is null)
                    throw new InvalidDataException($"{path}: row {done + i} lacks {plan.IdField}, {plan.TimeField} or {plan.EntityKeyField}.");
                if (times[i] is < 0 or > StreamInference.Infrastructure.Avro.AvroEventDecoder.MaxEventTimeMs)
                    throw new InvalidDataException($"{path}: row {done + i}: {plan.TimeField} {times[i]} ms is outside 1970..2200 (the stream dead-letters such events).");
                for (var c = 0; c < numericCols.Length; c++) numerics[c] = numericCols[c][i];
                for (var c = 0; c < textCols.Length; c++) texts[c] = textCols[c][i];
                for (var c = 0; c < batchCols.Length; c++) batchOnly[c] = batchCols[c][i];
                history.Add(ids[i]!, (long)times[i], numerics, texts, labels?[i] ?? double.NaN, batchOnly,
                    partitions is null ? -1 : (int)partitions[i], offsets is null ? -1 : (long)offsets[i]);
            }
            done += n;
            progress?.Report(done);
        }
        return history;
    }

    public static async Task WriteAsync(string path, EventHistory history, CancellationToken ct = default)
    {
        var plan = history.Plan;
        var dataFields = new List<DataField>
        {
            new DataField<string>(plan.IdField),
            new DataField<long>(plan.TimeField),
        };
        var numericColumns = plan.NumericFields.Where(f => f.Name != plan.TimeField).ToArray();
        dataFields.AddRange(plan.TextFields.Select(f => new DataField<string>(f.Name)));
        dataFields.AddRange(numericColumns.Select(f => new DataField<double?>(f.Name)));
        dataFields.AddRange(plan.BatchOnlyFields.Select(f => new DataField<double?>(f)));
        if (plan.LabelField is not null) dataFields.Add(new DataField<double?>(plan.LabelField));
        dataFields.Add(new DataField<int>(PartitionColumn));
        dataFields.Add(new DataField<long>(OffsetColumn));

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await using var stream = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(dataFields), stream, cancellationToken: ct).ConfigureAwait(false);
        const int rowGroup = 100_000;
        for (var start = 0; start < history.Count; start += rowGroup)
        {
            var n = Math.Min(rowGroup, history.Count - start);
            using var rg = writer.CreateRowGroup();
            var f = 0;
            await rg.WriteAsync(dataFields[f++], Rows(n, i => history.Id(start + i))).ConfigureAwait(false);
            await rg.WriteAsync<long>(dataFields[f++], Rows(n, i => history.TimeMs(start + i))).ConfigureAwait(false);
            foreach (var t in plan.TextFields)
                await rg.WriteAsync(dataFields[f++], Rows(n, i => history.Texts(start + i)[t.Slot])).ConfigureAwait(false);
            foreach (var c in numericColumns)
                await rg.WriteAsync<double>(dataFields[f++], Nullable(Rows(n, i => history.Numerics(start + i)[c.Slot]))).ConfigureAwait(false);
            for (var c = 0; c < plan.BatchOnlyFields.Count; c++)
            {
                var column = c;
                await rg.WriteAsync<double>(dataFields[f++], Nullable(Rows(n, i => history.BatchOnly(start + i, column)))).ConfigureAwait(false);
            }
            if (plan.LabelField is not null)
                await rg.WriteAsync<double>(dataFields[f++], Nullable(Rows(n, i => history.Label(start + i)))).ConfigureAwait(false);
            await rg.WriteAsync<int>(dataFields[f++], Rows(n, i => history.Partition(start + i))).ConfigureAwait(false);
            await rg.WriteAsync<long>(dataFields[f++], Rows(n, i => history.Offset(start + i))).ConfigureAwait(false);
        }
    }

    private static T[] Rows<T>(int n, Func<int, T> value)
    {
        var a = new T[n];
        for (var i = 0; i < n; i++) a[i] = value(i);
        return a;
    }

    private static double?[] Nullable(double[] values) => values.Select(v => double.IsFinite(v) ? v : (double?)null).ToArray();

    public static async Task<string?[]> ReadTextAsync(ParquetRowGroupReader rg, DataField field, int n, CancellationToken ct)
    {
        if (field.ClrType != typeof(string) && field.ClrType != typeof(ReadOnlyMemory<char>)) throw new InvalidDataException($"Column '{field.Name}' must be a string column, found {field.ClrType.Name}.");
        var values = new string?[n];
        await rg.ReadAsync(field, values.AsMemory(), null, ct).ConfigureAwait(false);
        return values;
    }

    /// <summary>Reads any numeric, boolean or timestamp column as doubles (NaN for nulls; timestamps as epoch ms).</summary>
    public static async Task<double[]> ReadNumericAsync(ParquetRowGroupReader rg, DataField field, int n, CancellationToken ct)
    {
        var t = field.ClrType;
        if (t == typeof(double)) return await Read<double>(rg, field, n, v => v, ct).ConfigureAwait(false);
        if (t == typeof(float)) return await Read<float>(rg, field, n, v => v, ct).ConfigureAwait(false);
        if (t == typeof(int)) return await Read<int>(rg, field, n, v => v, ct).ConfigureAwait(false);
        if (t == typeof(long)) return await Read<long>(rg, field, n, v => v, ct).ConfigureAwait(false);
        if (t == typeof(bool)) return await Read<bool>(rg, field, n, v => v ? 1 : 0, ct).ConfigureAwait(false);
        if (t == typeof(DateTime)) return await Read<DateTime>(rg, field, n, v => (v.ToUniversalTime() - DateTime.UnixEpoch).TotalMilliseconds, ct).ConfigureAwait(false);
        throw new InvalidDataException($"Column '{field.Name}' has type {t.Name}; expected a number, boolean or timestamp.");
    }

    private static async Task<double[]> Read<T>(ParquetRowGroupReader rg, DataField field, int n, Func<T, double> convert, CancellationToken ct)
        where T : struct
    {
        var result = new double[n];
        if (field.IsNullable)
        {
            var values = new T?[n];
            await rg.ReadAsync<T>(field, values.AsMemory(), null, ct).ConfigureAwait(false);
            for (var i = 0; i < n; i++) result[i] = values[i] is { } v ? convert(v) : double.NaN;
        }
        else
        {
            var values = new T[n];
            await rg.ReadAsync<T>(field, values.AsMemory(), null, ct).ConfigureAwait(false);
            for (var i = 0; i < n; i++) result[i] = convert(values[i]);
        }
        return result;
    }
}
