using StreamInference.Core.Features;

namespace StreamInference.Batch.History;

/// <summary>
/// A history of events in arrival order, held column-wise in the same slot layout the streaming
/// decoder fills (numeric and text slots of the <see cref="FeaturePlan"/>), plus what only the batch
/// path has: labels, batch-only numeric columns and the source partition/offset.
/// </summary>
public sealed class EventHistory
{
    private readonly List<string> _ids = [];
    private readonly List<long> _times = [];
    private readonly List<double> _numerics = [];
    private readonly List<string?> _texts = [];
    private readonly List<double> _labels = [];
    private readonly List<double> _batchOnly = [];
    private readonly List<int> _partitions = [];
    private readonly List<long> _offsets = [];

    public EventHistory(FeaturePlan plan)
    {
        Plan = plan;
        NumericWidth = plan.NumericFields.Count;
        TextWidth = plan.TextFields.Count;
        BatchOnlyWidth = plan.BatchOnlyFields.Count;
    }

    public FeaturePlan Plan { get; }
    public int NumericWidth { get; }
    public int TextWidth { get; }
    public int BatchOnlyWidth { get; }
    public int Count => _ids.Count;

    public string Id(int i) => _ids[i];
    public long TimeMs(int i) => _times[i];
    public string EntityKey(int i) => _texts[i * TextWidth + Plan.EntityKeySlot]!;
    /// <summary>Label (0/1), NaN when unknown.</summary>
    public double Label(int i) => _labels[i];
    public int Partition(int i) => _partitions[i];
    public long Offset(int i) => _offsets[i];

    public ReadOnlySpan<double> Numerics(int i) => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_numerics).Slice(i * NumericWidth, NumericWidth);
    public ReadOnlySpan<string?> Texts(int i) => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_texts).Slice(i * TextWidth, TextWidth);
    public double BatchOnly(int i, int column) => _batchOnly[i * BatchOnlyWidth + column];

    /// <summary>Value of a numeric input by name: a decoded numeric slot, a batch-only column, or the label.</summary>
    public Func<int, double> NumericColumn(string field)
    {
        if (field == Plan.LabelField) return Label;
        var slot = Plan.NumericSlot(field);
        if (slot >= 0) return i => _numerics[i * NumericWidth + slot];
        for (var c = 0; c < Plan.BatchOnlyFields.Count; c++)
        {
            if (Plan.BatchOnlyFields[c] != field) continue;
            var column = c;
            return i => BatchOnly(i, column);
        }
        throw new ArgumentException($"'{field}' is not a numeric column of the history.", nameof(field));
    }

    /// <summary>Appends one event; spans must have the plan's widths. The entity key must be present.</summary>
    public void Add(string id, long timeMs, ReadOnlySpan<double> numerics, ReadOnlySpan<string?> texts, double label,
        ReadOnlySpan<double> batchOnly, int partition = -1, long offset = -1)
    {
        if (texts[Plan.EntityKeySlot] is null) throw new ArgumentException($"Event '{id}' has no {Plan.EntityKeyField}.");
        _ids.Add(id);
        _times.Add(timeMs);
        foreach (var v in numerics) _numerics.Add(v);
        foreach (var t in texts) _texts.Add(t);
        foreach (var v in batchOnly) _batchOnly.Add(v);
        _labels.Add(label);
        _partitions.Add(partition);
        _offsets.Add(offset);
    }

    /// <summary>A copy holding only the events at or before <paramref name="maxTimeMs"/>, in the same order.</summary>
    public EventHistory Until(long maxTimeMs)
    {
        var copy = new EventHistory(Plan);
        var batchOnly = new double[BatchOnlyWidth];
        for (var i = 0; i < Count; i++)
        {
            if (_times[i] > maxTimeMs) continue;
            for (var c = 0; c < BatchOnlyWidth; c++) batchOnly[c] = BatchOnly(i, c);
            copy.Add(_ids[i], _times[i], Numerics(i), Texts(i), _labels[i], batchOnly, _partitions[i], _offsets[i]);
        }
        return copy;
    }

    /// <summary>Row indices sorted by event time, ties in arrival order.</summary>
    public int[] EventTimeOrder()
    {
        var order = new int[Count];
        for (var i = 0; i < order.Length; i++) order[i] = i;
        var keys = _times.ToArray();
        // Stable: sort (time, arrival index) pairs.
        Array.Sort(order, (a, b) => keys[a] != keys[b] ? keys[a].CompareTo(keys[b]) : a.CompareTo(b));
        return order;
    }

    public long MinTimeMs => Count == 0 ? 0 : _times.Min();
    public long MaxTimeMs => Count == 0 ? 0 : _times.Max();
}
