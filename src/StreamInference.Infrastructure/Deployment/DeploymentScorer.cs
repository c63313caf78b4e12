using System.Diagnostics;
using Microsoft.Extensions.Logging;
using StreamInference.Core.Deployment;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Infrastructure.Deployment;

/// <summary>
/// A model of a deployment with its own output buffers: the champion scores into the batch, every other model into
/// these (a shadow's outputs never touch the champion's), either all clean rows or the rows an entity sampler
/// selects (a canary's share, a shadow's sample), gathered into one contiguous run.
/// </summary>
public sealed class DeployedModel : IDisposable
{
    private readonly float[] _gathered;
    private readonly int _featureCount;

    public DeployedModel(ModelRef reference, OnnxScorer scorer, int capacity, int featureCount)
    {
        Reference = reference;
        Scorer = scorer;
        _featureCount = featureCount;
        Scores = new double[capacity * scorer.OutputWidth];
        Labels = new string?[capacity];
        Slots = new int[capacity];
        _gathered = new float[capacity * featureCount];
    }

    public ModelRef Reference { get; }
    public OnnxScorer Scorer { get; }
    public ModelIdentity Identity => Scorer.Identity;
    /// <summary>The last batch's outputs, <see cref="OnnxScorer.OutputWidth"/> scores and one label per slot.</summary>
    public double[] Scores { get; }
    public string?[] Labels { get; }
    /// <summary>Per clean row k of the last batch: its slot in <see cref="Scores"/>, or -1 when this model did not score it.</summary>
    public int[] Slots { get; }
    /// <summary>Rows scored in the last batch.</summary>
    public int Rows { get; private set; }
    /// <summary>Whether the last batch was scored (false before a batch and after a failure): nothing stale is ever read.</summary>
    public bool Valid { get; private set; }
    /// <summary>Time the last batch took.</summary>
    public TimeSpan Elapsed { get; private set; }
    public long Failures { get; private set; }

    public ReadOnlySpan<double> ScoreRow(int slot) => Scores.AsSpan(slot * Scorer.OutputWidth, Scorer.OutputWidth);
    public double Primary(int slot) => Scores[slot * Scorer.OutputWidth + Scorer.PrimaryScoreIndex];

    public void Invalidate()
    {
        Valid = false;
        Rows = 0;
    }

    /// <summary>
    /// Scores the batch's clean rows that <paramref name="select"/> contains (all when null) into this model's buffers.
    /// Throws what the model throws; the outputs stay invalid then.
    /// </summary>
    public void Score(EventBatch batch, EntitySampler? select)
    {
        Invalidate();
        var start = Stopwatch.GetTimestamp();
        try
        {
            if (select is null)
            {
                for (var k = 0; k < batch.OkCount; k++) Slots[k] = k;
                Scorer.ScoreInto(batch, Scores, Labels);
                Rows = batch.OkCount;
            }
            else
            {
                var n = 0;
                for (var k = 0; k < batch.OkCount; k++)
                {
                    if (select.Contains(batch.EntityKeys[batch.Rows[k]]!))
                    {
                        batch.FeatureRow(k).CopyTo(_gathered.AsSpan(n * _featureCount, _featureCount));
                        Slots[k] = n++;
                    }
                    else Slots[k] = -1;
                }
                Scorer.ScoreFeatures(_gathered, n, batch.Capacity, Scores, Labels);
                Rows = n;
            }
            Valid = true;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Failures++;
            throw;
        }
        finally
        {
            Elapsed = Stopwatch.GetElapsedTime(start);
        }
    }

    /// <summary>
    /// Serves the rows this model scored in the last batch: its scores and labels replace the batch's (the champion's,
    /// already compared), and the rows record this model and <paramref name="arm"/>.
    /// </summary>
    public void ServeInto(EventBatch batch, ServingArm arm)
    {
        if (!Valid) return;
        for (var k = 0; k < batch.OkCount; k++)
        {
            var slot = Slots[k];
            if (slot < 0) continue;
            ScoreRow(slot).CopyTo(batch.ScoreRow(k));
            batch.Labels[k] = Labels[slot];
            batch.Arms[k] = arm;
            batch.RowModels[k] = Identity;
        }
    }

    public void Dispose() => Scorer.Dispose();
}

/// <summary>A challenger scored beside the champion: its model, the entities it serves or samples, and the live comparison.</summary>
public sealed record Challenger(DeployedModel Model, ServingArm Arm, EntitySampler? Select, ModelComparison Comparison);

/// <summary>The fallback tier of a deployment: its model and the controller that decides when it serves.</summary>
public sealed record FallbackTier(DeployedModel Model, FallbackController Controller, bool OnError);

/// <summary>
/// One version of a deployment, loaded: the champion and every other model with its role. Immutable once built; a
/// change of the deployment file builds the next one beside it (models both share are reused, not reloaded).
/// </summary>
public sealed class ServingDeployment
{
    public ServingDeployment(DeploymentSpec spec, DeployedModel champion, Challenger? canary, IReadOnlyList<Challenger> shadows, FallbackTier? fallback)
    {
        Spec = spec;
        Champion = champion;
        Canary = canary;
        Shadows = shadows;
        Fallback = fallback;
        Models = [.. new[] { champion }.Concat(canary is null ? [] : [canary.Model]).Concat(shadows.Select(s => s.Model))
            .Concat(fallback is null ? [] : [fallback.Model]).Distinct()];
    }

    public DeploymentSpec Spec { get; }
    public long Version => Spec.Version;
    public DeployedModel Champion { get; }
    public Challenger? Canary { get; }
    public IReadOnlyList<Challenger> Shadows { get; }
    public FallbackTier? Fallback { get; }
    /// <summary>Every model, each once, the champion first.</summary>
    public IReadOnlyList<DeployedModel> Models { get; }
    /// <summary>The comparisons of this deployment: the canary's, then the shadows'.</summary>
    public IEnumerable<Challenger> Challengers => (Canary is null ? [] : new[] { Canary }).Concat(Shadows);

    /// <summary>Every (model, role) pair: a fallback that is also a shadow has both.</summary>
    public IEnumerable<(DeployedModel Model, ServingArm Role)> Roles =>
        new[] { (Champion, ServingArm.Champion) }
            .Concat(Canary is null ? [] : [(Canary.Model, ServingArm.Canary)])
            .Concat(Shadows.Select(x => (x.Model, ServingArm.Shadow)))
            .Concat(Fallback is null ? [] : [(Fallback.Model, ServingArm.Fallback)]);

    /// <summary>The role a model plays in this deployment (the serving one, for a fallback that is also a shadow), or null when it has none.</summary>
    public ServingArm? RoleOf(ModelIdentity model) =>
        Champion.Identity == model ? ServingArm.Champion
        : Canary?.Model.Identity == model ? ServingArm.Canary
        : Fallback?.Model.Identity == model ? ServingArm.Fallback
        : Shadows.Any(s => s.Model.Identity == model) ? ServingArm.Shadow
        : null;
}

/// <summary>What a deployment reports as it serves: scoring per model, tier switches, champion failures, comparison windows, changes.</summary>
public interface IDeploymentObserver
{
    void OnScored(DeployedModel model, ServingArm arm, int rows, TimeSpan elapsed);
    void OnTierSwitched(ServingDeployment deployment, TierSwitch change);
    void OnChampionFailed(ServingDeployment deployment, Exception error);
    void OnComparison(ServingDeployment deployment, Challenger challenger, ComparisonReport report);
    void OnDeploymentChanged(ServingDeployment? previous, ServingDeployment next);
}

/// <summary>
/// The score stage's scorer under a deployment (Model:Deployment). Per batch: the fallback tier serves every row
/// while the processor is behind (and the rows the champion failed on, with onError); otherwise the champion scores
/// every row, the canary re-scores the rows of its entities (its scores are served, the champion's are kept for the
/// comparison), and each shadow scores its rows into its own buffers for the sink to publish apart. Every row
/// records the model and arm that served it, and the batch the deployment version.
/// <para>
/// The deployment file is polled; a higher version is loaded and warmed on the watcher thread and swapped in between
/// two batches, so each batch is scored by exactly one version. A file that cannot be used is logged and ignored.
/// </para>
/// </summary>
public sealed class DeploymentScorer : IScorer, IDisposable
{
    private readonly DeploymentLoader _loader;
    private readonly Func<(long? Lag, double? InputRate)> _signals;
    private double? _championRate;
    private readonly IDeploymentObserver _observer;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Timer? _timer;
    private readonly Lock _gate = new();
    private ServingDeployment _current;
    private ServingDeployment? _pending;
    private string? _lastRejected;
    private int _checking;
    private volatile bool _disposed;
    private TimeSpan _served;   // the time the serving model took on the current batch

    /// <param name="signals">Consumer lag (events) and input rate (events/s), as the consumer last measured them.</param>
    public DeploymentScorer(ServingDeployment initial, DeploymentLoader loader, Func<(long? Lag, double? InputRate)> signals, IDeploymentObserver observer, ILogger log,
        TimeSpan watchInterval, TimeProvider? time = null)
    {
        _current = initial;
        _loader = loader;
        _signals = signals;
        _observer = observer;
        _log = log;
        _time = time ?? TimeProvider.System;
        Subscribe(initial);
        Report(() => _observer.OnDeploymentChanged(null, initial));
        if (watchInterval > TimeSpan.Zero) _timer = new Timer(_ => CheckForChange(), null, watchInterval, watchInterval);
    }

    /// <summary>The deployment that scored the last batch (the score stage's; read by the sink and observers on that thread).</summary>
    public ServingDeployment Current => Volatile.Read(ref _current);
    public string ModelName => Current.Champion.Scorer.ModelName;
    public string ModelVersion => Current.Champion.Scorer.ModelVersion;
    public int OutputWidth => Current.Champion.Scorer.OutputWidth;
    /// <summary>The consumer lag the fallback tier last judged (null: not measured yet, or no fallback tier).</summary>
    public long? LastLag { get; private set; }
    /// <summary>The event age (ms) the fallback tier last judged.</summary>
    public long? LastEventAgeMs { get; private set; }

    public void Score(EventBatch batch)
    {
        TakePending();
        var d = _current;
        batch.DeploymentVersion = d.Version;
        foreach (var c in d.Challengers) c.Model.Invalidate();
        d.Fallback?.Model.Invalidate();

        var (lag, rate) = d.Fallback is null ? (null, null) : _signals();
        // The champion's measured throughput decides when the fallback hands back. Entered before a full champion batch
        // was ever measured (a spike right after a start or a deployment change), the fallback would hand back on no figure
        // at all and the tier would flap; so the champion serves that one full batch first, which measures it.
        if (d.Fallback is { } fallback && fallback.Controller.Observe(LastLag = lag, LastEventAgeMs = EventAgeMs(batch), rate, _championRate) == ServingTier.Fallback
            && !(_championRate is null && batch.OkCount >= batch.Capacity / 2))
        {
            // Behind: the cheaper tier serves every row; the challengers wait (they would only add load).
            ServeAll(batch, fallback.Model, ServingArm.Fallback);
            return;
        }
        try
        {
            ServeAll(batch, d.Champion, ServingArm.Champion);
        }
        catch (Exception e) when (e is not OperationCanceledException && d.Fallback is { OnError: true } tier)
        {
            Report(() => _observer.OnChampionFailed(d, e));
            DeploymentLog.ChampionFailed(_log, d.Champion.Identity.ToString(), batch.OkCount, e.Message, tier.Model.Identity.ToString());
            ServeAll(batch, tier.Model, ServingArm.Fallback);
            return;
        }
        // Every challenger is compared with the champion's scores, still in the batch; then the canary's rows get the
        // canary's scores and labels.
        var canaryScored = d.Canary is { } canary && Challenge(batch, canary);
        foreach (var shadow in d.Shadows) Challenge(batch, shadow);
        if (canaryScored) d.Canary!.Model.ServeInto(batch, ServingArm.Canary);
    }

    /// <summary>One model serves every clean row of the batch (the champion, or the fallback tier).</summary>
    private void ServeAll(EventBatch batch, DeployedModel model, ServingArm arm)
    {
        var start = Stopwatch.GetTimestamp();
        model.Scorer.Score(batch);
        var elapsed = _served = Stopwatch.GetElapsedTime(start);
        var identity = model.Identity;
        // The champion's throughput, from full batches only (a small batch's fixed cost would understate it).
        if (arm == ServingArm.Champion && batch.OkCount >= batch.Capacity / 2 && elapsed > TimeSpan.Zero)
        {
            var rate = batch.OkCount / elapsed.TotalSeconds;
            _championRate = _championRate is { } r ? 0.8 * r + 0.2 * rate : rate;
        }
        for (var k = 0; k < batch.OkCount; k++)
        {
            batch.Arms[k] = arm;
            batch.RowModels[k] = identity;
        }
        Report(() => _observer.OnScored(model, arm, batch.OkCount, elapsed));
    }

    /// <summary>
    /// A challenger scores its rows beside the champion (whose scores are in the batch) and the pair is compared. A
    /// challenger that fails leaves the champion's predictions as they are: its rows are served by the champion.
    /// </summary>
    private bool Challenge(EventBatch batch, Challenger challenger)
    {
        var model = challenger.Model;
        try
        {
            model.Score(batch, challenger.Select);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            DeploymentLog.ChallengerFailed(_log, challenger.Arm.Text(), model.Identity.ToString(), batch.OkCount, e.Message);
            return false;
        }
        Report(() =>
        {
            _observer.OnScored(model, challenger.Arm, model.Rows, model.Elapsed);
            var comparison = challenger.Comparison;
            var index = batch.ScoredBy!.PrimaryScoreIndex;
            var width = batch.ScoreWidth;
            comparison.ObserveCost(challenger: false, batch.OkCount, _served);
            comparison.ObserveCost(challenger: true, model.Rows, model.Elapsed);
            for (var k = 0; k < batch.OkCount; k++)
            {
                var slot = model.Slots[k];
                if (slot >= 0) comparison.Observe(batch.Scores[k * width + index], model.Primary(slot));
            }
        });
        return true;
    }

    /// <summary>How long the oldest record of the batch has waited since it was produced (its Kafka timestamp).</summary>
    private long? EventAgeMs(EventBatch batch)
    {
        if (batch.Count == 0) return null;
        var oldest = long.MaxValue;
        for (var i = 0; i < batch.Count; i++)
        {
            var t = batch.Records[i].TimestampMs;
            if (t > 0 && t < oldest) oldest = t;
        }
        return oldest == long.MaxValue ? null : Math.Max(0, _time.GetUtcNow().ToUnixTimeMilliseconds() - oldest);
    }

    private void Subscribe(ServingDeployment d)
    {
        if (d.Fallback is { } f) f.Controller.Switched += change =>
        {
            DeploymentLog.TierSwitched(_log, change.From == ServingTier.Champion ? d.Champion.Identity.ToString() : f.Model.Identity.ToString(),
                change.To == ServingTier.Champion ? d.Champion.Identity.ToString() : f.Model.Identity.ToString(), change.Reason, d.Version);
            Report(() => _observer.OnTierSwitched(d, change));
        };
        foreach (var c in d.Challengers) c.Comparison.WindowClosed += report => _observer.OnComparison(d, c, report);
    }

    /// <summary>Swaps in a loaded newer version before the batch (score stage); releases the models it no longer uses.</summary>
    private void TakePending()
    {
        ServingDeployment previous, next;
        lock (_gate)
        {
            // Taken and installed under the watcher's lock: a version it builds meanwhile is built on this one.
            if (_pending is null) return;
            next = _pending;
            _pending = null;
            previous = _current;
            Volatile.Write(ref _current, next);
        }
        foreach (var m in previous.Models.Except(next.Models)) m.Dispose();   // only the score stage runs sessions, and it is here
        DeploymentLog.Changed(_log, previous.Version, next.Version, Describe(next));
        Report(() =>
        {
            foreach (var c in previous.Challengers) c.Comparison.Close();
            _observer.OnDeploymentChanged(previous, next);
        });
    }

    /// <summary>Reporting (metrics, comparison reports, the host's handlers) never fails a batch: a failure is logged.</summary>
    private void Report(Action report)
    {
        try
        {
            report();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            DeploymentLog.ReportFailed(_log, e.Message);
        }
    }

    /// <summary>Reads the deployment file once; a higher version is loaded and queued for the score stage (the timer calls this; tests may too).</summary>
    public void CheckForChange()
    {
        if (Interlocked.Exchange(ref _checking, 1) == 1) return;
        try
        {
            if (_disposed) return;
            DeploymentSpec spec;
            try
            {
                spec = _loader.ReadSpec();
            }
            catch (Exception e) when (e is DeploymentException or IOException or UnauthorizedAccessException)
            {
                RejectOnce(e.Message);
                return;
            }
            ServingDeployment basis;
            lock (_gate) basis = _pending ?? _current;
            if (spec.Version <= basis.Version)
            {
                if (spec.Version < basis.Version || spec != basis.Spec && !SameContent(spec, basis.Spec))
                    RejectOnce($"{_loader.Path}: version {spec.Version} is not above the serving version {basis.Version}; raise it to apply a change (model promote and model rollback do).");
                return;
            }
            ServingDeployment next;
            try
            {
                // Only the basis's models are reused: while this loads, the score stage may take the pending version and
                // release the serving one's other models (a version is built on what will be serving when it is taken).
                next = _loader.Load(spec, basis.Models, basis);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                RejectOnce($"{_loader.Path} version {spec.Version} cannot be served: {e.Message}");
                return;
            }
            if (_disposed)
            {
                _loader.Release(next, _current.Models);
                return;
            }
            Subscribe(next);
            lock (_gate)
            {
                // A version loaded but not yet taken is superseded: release what only it loaded.
                if (_pending is { } superseded) _loader.Release(superseded, next.Models.Concat(_current.Models));
                _pending = next;
            }
            _lastRejected = null;
            DeploymentLog.Ready(_log, next.Version, Describe(next));
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    private static bool SameContent(DeploymentSpec a, DeploymentSpec b) =>
        a.Champion == b.Champion && a.Shadows.SequenceEqual(b.Shadows) && a.Canary == b.Canary && a.Fallback == b.Fallback;

    private void RejectOnce(string why)
    {
        if (why == _lastRejected) return;
        _lastRejected = why;
        DeploymentLog.Rejected(_log, why, Current.Version);
    }

    public static string Describe(ServingDeployment d) => string.Join("; ", new[]
    {
        $"champion {d.Champion.Identity}",
        d.Canary is { } c ? FormattableString.Invariant($"canary {c.Model.Identity} ({c.Select!.Share:P0} of entities, salt '{c.Select.Salt}')") : null,
        d.Shadows.Count > 0 ? "shadows " + string.Join(", ", d.Shadows.Select(s => s.Select is { } x ? FormattableString.Invariant($"{s.Model.Identity} ({x.Share:P0})") : s.Model.Identity.ToString())) : null,
        d.Fallback is { } f ? $"fallback {f.Model.Identity}" : null,
    }.Where(x => x is not null));

    public void Dispose()
    {
        _disposed = true;
        _timer?.Dispose();
        while (Volatile.Read(ref _checking) == 1) Thread.Sleep(5);
        lock (_gate)
        {
            if (_pending is { } pending) _loader.Release(pending, _current.Models);
            _pending = null;
        }
        foreach (var m in _current.Models) m.Dispose();
    }
}

public static partial class DeploymentLog
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "The {Arm} {Model} failed to score a batch of {Rows}: {Reason}; the champion's predictions are served for its rows")]
    public static partial void ChallengerFailed(ILogger logger, string arm, string model, int rows, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Champion {Model} failed to score a batch of {Rows}: {Reason}; the fallback tier {Fallback} serves it")]
    public static partial void ChampionFailed(ILogger logger, string model, int rows, string reason, string fallback);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Serving tier: {From} → {To} ({Reason}), deployment v{Version}")]
    public static partial void TierSwitched(ILogger logger, string from, string to, string reason, long version);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deployment v{Version} from {Path}: {Models}; shadow predictions → {ShadowTopic}")]
    public static partial void Loaded(ILogger logger, long version, string path, string models, string shadowTopic);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deployment v{Version} loaded and warmed ({Models}); it serves from the next batch")]
    public static partial void Ready(ILogger logger, long version, string models);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Deployment v{Previous} → v{Next}: {Models}")]
    public static partial void Changed(ILogger logger, long previous, long next, string models);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Deployment reporting failed: {Reason}; serving goes on")]
    public static partial void ReportFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Deployment change ignored: {Reason}; v{Serving} keeps serving")]
    public static partial void Rejected(ILogger logger, string reason, long serving);
}
