namespace StreamInference.Core.Evaluation;

/// <summary>
/// How long ground truth takes to arrive, for synthetic label streams: the feature set's <c>label.knownAfter</c> is
/// when a label is usable, so most arrive within it (skewed early, as chargebacks are), some later, some never.
/// </summary>
public static class LabelDelays
{
    /// <summary>Share of events whose label never comes.</summary>
    public const double Never = 0.02;
    /// <summary>Share of labels that come after <c>knownAfter</c>, up to three times it.</summary>
    public const double Late = 0.05;

    /// <summary>The delay from event to label in milliseconds, or null when the label never comes.</summary>
    public static long? Draw(Random random, long knownAfterMs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(knownAfterMs, 1);
        var u = random.NextDouble();
        if (u < Never) return null;
        if (u < Never + Late) return knownAfterMs + (long)(random.NextDouble() * 2 * knownAfterMs);
        // Within knownAfter, skewed early: the square of a uniform puts half of them in the first quarter.
        var x = random.NextDouble();
        return Math.Max(1, (long)(x * x * knownAfterMs));
    }
}
