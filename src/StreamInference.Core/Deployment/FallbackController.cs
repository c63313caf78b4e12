namespace StreamInference.Core.Deployment;

/// <summary>Which tier serves: the champion (with its canary) or the fallback model.</summary>
public enum ServingTier
{
    Champion,
    Fallback,
}

/// <summary>One change of tier: when, to which, and the signal that caused it.</summary>
public sealed record TierSwitch(DateTimeOffset At, ServingTier From, ServingTier To, string Reason);

/// <summary>
/// Decides, batch by batch, whether the fallback tier serves. It takes over when consumer lag or event age exceeds
/// its enter budget, and hands back when every signal is below its exit budget (hysteresis: the exit budget is lower,
/// so a signal hovering at one budget does not flap); no switch comes sooner than the minimum dwell after the last
/// one. Pure: the caller measures lag and age and passes the time.
/// </summary>
public sealed class FallbackController(FallbackSpec spec, TimeProvider time)
{
    private DateTimeOffset _since = DateTimeOffset.MinValue;
    private readonly Queue<(DateTimeOffset At, double Rate)> _inputRates = new();

    /// <summary>
    /// The input rate judged for the hand-back is the highest measured over this window: one quiet measurement in the
    /// middle of a spike (the producers paused for a moment, a collection) does not hand back to a champion that cannot keep up.
    /// </summary>
    public static readonly TimeSpan InputRateWindow = TimeSpan.FromSeconds(2);

    public ServingTier Tier { get; private set; } = ServingTier.Champion;

    public FallbackSpec Spec => spec;

    /// <summary>
    /// Carries the tier, the time of the last switch and the count over from the controller of the previous deployment
    /// version (same fallback model): a change of the file during a spike neither hands back nor restarts the dwell.
    /// </summary>
    public void ContinueFrom(FallbackController previous)
    {
        Tier = previous.Tier;
        _since = previous._since;
        Switches = previous.Switches;
        foreach (var rate in previous._inputRates) _inputRates.Enqueue(rate);
    }

    /// <summary>Switches so far, in both directions.</summary>
    public long Switches { get; private set; }

    /// <summary>Called on every switch, on the caller's thread.</summary>
    public event Action<TierSwitch>? Switched;

    /// <summary>
    /// Hands back only when the champion can keep up: the input rate below this share of the champion's measured
    /// throughput (when both are known). Without it a spike that outlasts the dwell flaps: the fallback drains the
    /// backlog, the champion takes over, and the lag builds again.
    /// </summary>
    public const double Headroom = 0.8;

    /// <summary>
    /// Updates the tier from the latest signals (null: not measured this time) and returns it. <paramref name="inputRate"/>
    /// is the rate records arrive (events/s), <paramref name="championRate"/> the champion's throughput (rows/s).
    /// </summary>
    public ServingTier Observe(long? lagEvents, long? eventAgeMs, double? inputRate = null, double? championRate = null)
    {
        var now = time.GetUtcNow();
        if (inputRate is { } measured) _inputRates.Enqueue((now, measured));
        while (_inputRates.Count > 0 && now - _inputRates.Peek().At > InputRateWindow) _inputRates.Dequeue();
        // Called per batch: a plain loop over the queue's struct enumerator allocates nothing.
        foreach (var (_, recent) in _inputRates) inputRate = Math.Max(inputRate ?? recent, recent);
        if (_since != DateTimeOffset.MinValue && now - _since < TimeSpan.FromMilliseconds(spec.MinDwellMs)) return Tier;
        if (Tier == ServingTier.Champion)
        {
            var reason = Over(lagEvents, spec.EnterLagEvents, "consumer lag", "events")
                         ?? Over(eventAgeMs, spec.EnterEventAgeMs, "event age", "ms");
            if (reason is not null) Switch(now, ServingTier.Fallback, reason);
        }
        else if (Below(lagEvents, spec.ExitLagEvents) && Below(eventAgeMs, spec.ExitEventAgeMs) && KeepsUp(inputRate, championRate))
        {
            Switch(now, ServingTier.Champion, FormattableString.Invariant(
                $"consumer lag {Text(lagEvents)} events and event age {Text(eventAgeMs)} ms below the exit budgets, input {Rate(inputRate)}/s within the champion's {Rate(championRate)}/s"));
        }
        return Tier;
    }

    private static string? Over(long? value, long? budget, string signal, string unit) =>
        value is { } v && budget is { } b && v > b ? FormattableString.Invariant($"{signal} {v} {unit} over the budget of {b}") : null;

    /// <summary>A signal without a budget, or not measured, does not hold the fallback.</summary>
    private static bool Below(long? value, long? budget) => budget is null || value is null || value < budget;

    private static bool KeepsUp(double? input, double? champion) => input is not { } i || champion is not { } c || i < Headroom * c;

    private static string Rate(double? value) => value is { } v ? v.ToString("0", System.Globalization.CultureInfo.InvariantCulture) : "-";

    private static string Text(long? value) => value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-";

    private void Switch(DateTimeOffset now, ServingTier to, string reason)
    {
        var from = Tier;
        Tier = to;
        _since = now;
        Switches++;
        Switched?.Invoke(new TierSwitch(now, from, to, reason));
    }
}
