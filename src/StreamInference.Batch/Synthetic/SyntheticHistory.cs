using StreamInference.Batch.History;
using StreamInference.Core.Features;

namespace StreamInference.Batch.Synthetic;

/// <summary>Shape of a synthetic history.</summary>
public sealed record HistoryOptions
{
    public int Events { get; init; } = 300_000;
    /// <summary>Seed of the example world (cards, merchants) and of its events: the one the example model was trained on.</summary>
    public const int DefaultSeed = 42;
    public int Seed { get; init; } = DefaultSeed;
    public DateTimeOffset End { get; init; } = new(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
    public TimeSpan Span { get; init; } = TimeSpan.FromDays(90);
    /// <summary>Share of events that reach the broker after a delay of up to 90 s (out of order, usually within the lateness).</summary>
    public double DelayedShare { get; init; } = 0.03;
    /// <summary>Share of events delayed 3–10 minutes (typically beyond the allowed lateness).</summary>
    public double VeryLateShare { get; init; } = 0.003;
    /// <summary>From this event (in time order) on, the generator is shifted (<see cref="PaymentGenerator.Shifted"/>).</summary>
    public int? DriftAt { get; init; }
    /// <summary>Events later than this are left out (a history that ends now, with the rest of today's pattern still to come).</summary>
    public DateTimeOffset Until { get; init; } = DateTimeOffset.MaxValue;
}

/// <summary>
/// A synthetic card-payment history as the broker would have received it: events in arrival order,
/// event times shaped by time of day, some arriving out of order, a few very late, each with its
/// fraud label. Mapped to the feature plan's slots exactly like the decoder maps a live event.
/// </summary>
public static class SyntheticHistory
{
    public static EventHistory Generate(FeaturePlan plan, HistoryOptions options, IProgress<long>? progress = null)
    {
        var generator = new PaymentGenerator(options.Seed);
        var random = new Random(options.Seed + 1);
        var start = options.End - options.Span;
        var events = new List<(PaymentEvent Event, long ArrivalMs)>(options.Events);
        for (var i = 0; i < options.Events; i++)
        {
            if (i == options.DriftAt) generator.Shifted = true;
            var e = generator.Next(start + options.Span * ((double)i / options.Events), shapeHourOfDay: true);
            // The hour pattern moves an event within its day; events after Until (for a warm start, the future) are not kept.
            if (e.EventTime > options.Until) continue;
            var t = e.EventTime.ToUnixTimeMilliseconds();
            var u = random.NextDouble();
            var delay = u < options.VeryLateShare ? random.Next(180_000, 600_000)
                : u < options.VeryLateShare + options.DelayedShare ? random.Next(5_000, 90_000)
                : random.Next(0, 2_000);
            events.Add((e, t + delay));
            if ((i & 0xFFFF) == 0) progress?.Report(i);
        }
        events.Sort((a, b) => a.ArrivalMs.CompareTo(b.ArrivalMs));

        var history = new EventHistory(plan);
        var numerics = new double[plan.NumericFields.Count];
        var texts = new string?[plan.TextFields.Count];
        var batchOnly = new double[plan.BatchOnlyFields.Count];
        foreach (var (e, _) in events)
        {
            Slots(plan, e, numerics, texts, batchOnly);
            history.Add(e.EventId, e.EventTime.ToUnixTimeMilliseconds(), numerics, texts, e.IsFraud ? 1 : 0, batchOnly);
        }
        progress?.Report(options.Events);
        return history;
    }

    /// <summary>Fills the decoder-shaped slots for a synthetic event, as the streaming path would see it.</summary>
    public static void Slots(FeaturePlan plan, PaymentEvent e, Span<double> numerics, Span<string?> texts, Span<double> batchOnly)
    {
        foreach (var field in plan.NumericFields) numerics[field.Slot] = Numeric(e, field.Name);
        foreach (var field in plan.TextFields) texts[field.Slot] = Text(e, field.Name);
        for (var c = 0; c < plan.BatchOnlyFields.Count; c++) batchOnly[c] = Numeric(e, plan.BatchOnlyFields[c]);
    }

    private static double Numeric(PaymentEvent e, string field) => field switch
    {
        "amount" => e.Amount,
        "event_time" => e.EventTime.ToUnixTimeMilliseconds(),
        "is_foreign" => e.IsForeign ? 1 : 0,
        _ => double.NaN,
    };

    private static string? Text(PaymentEvent e, string field) => field switch
    {
        "event_id" => e.EventId,
        "card_id" => e.CardId,
        "merchant_id" => e.MerchantId,
        "channel" => e.Channel.ToString(),
        "country" => e.Country,
        "currency" => e.Currency,
        _ => null,
    };
}
