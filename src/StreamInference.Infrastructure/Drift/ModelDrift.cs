using StreamInference.Core.Drift;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Deployment;

namespace StreamInference.Infrastructure.Drift;

/// <summary>
/// Drift per model: each model that serves rows (the champion, a canary, the fallback tier, a model swapped in) and
/// each shadow is monitored against its own reference profile, on the rows it scored with its own scores. A model's
/// monitor is made the first time it scores (its profile read from its version directory), so a model promoted or
/// swapped in is judged against its own training distributions from its first batch; a model without a profile is
/// not monitored (logged once).
/// </summary>
public sealed class ModelDrift(Func<ModelIdentity, DriftPublisher?> create, Func<DeploymentScorer?> deployment) : IPipelineObserver, IDisposable
{
    // By name@version: a model reloaded by a later deployment version (a new identity object) keeps its monitor.
    private readonly Dictionary<string, (ModelIdentity Model, DriftPublisher? Publisher)> _publishers = [];
    private ModelIdentity? _serving;
    private readonly List<ModelIdentity> _seen = new(4);
    private readonly Lock _gate = new();
    private long _deploymentVersion = -1;

    /// <summary>The monitors made so far, by model.</summary>
    public IReadOnlyDictionary<ModelIdentity, DriftMonitor> Monitors
    {
        get
        {
            lock (_gate) return _publishers.Values.Where(p => p.Publisher is not null).ToDictionary(p => p.Model, p => p.Publisher!.Monitor);
        }
    }

    /// <summary>
    /// Per model (name@version): events observed and windows closed since the start, including models that have left
    /// the deployment since.
    /// </summary>
    public IReadOnlyDictionary<string, (long Observed, long Windows)> Totals
    {
        get
        {
            lock (_gate)
            {
                var totals = new Dictionary<string, (long Observed, long Windows)>(_retired);
                foreach (var (key, (_, p)) in _publishers)
                    if (p is not null)
                        totals[key] = totals.TryGetValue(key, out var t) ? (t.Observed + p.Monitor.Observed, t.Windows + p.Monitor.WindowsClosed) : (p.Monitor.Observed, p.Monitor.WindowsClosed);
                return totals;
            }
        }
    }

    private readonly Dictionary<string, (long Observed, long Windows)> _retired = [];

    /// <summary>The monitor of the champion (of the model serving, without a deployment); null when it has no profile.</summary>
    public DriftMonitor? Serving { get; private set; }

    /// <summary>Raised for every closed window of every model (on the thread that closed it).</summary>
    public event Action<ModelIdentity, DriftReport>? WindowClosed;

    /// <summary>Makes the monitor of the model serving at start, before the first batch (so its windows can be watched from the start).</summary>
    public void Prepare(ModelIdentity champion) => Serving = Get(champion, deployment()?.Current)?.Monitor;

    public void OnBatchScored(EventBatch batch, TimeSpan score)
    {
        if (batch.OkCount == 0) return;
        var d = deployment()?.Current;
        if (d is not null && d.Version != _deploymentVersion) Relabel(d);
        if (d is null && batch.ScoredBy is { } scoredBy && scoredBy != _serving)
        {
            // One model without a deployment: a version swapped in replaces the previous one's monitor.
            if (_serving is { } before && before.ToString() != scoredBy.ToString()) Retire(before.ToString());
            _serving = scoredBy;
        }
        _seen.Clear();
        for (var k = 0; k < batch.OkCount; k++)
        {
            var model = batch.ServedBy(k)!;
            if (!_seen.Contains(model)) _seen.Add(model);
        }
        foreach (var model in _seen)
        {
            if (Get(model, d) is not { } publisher) continue;
            if (d is null ? model == batch.ScoredBy : model == d.Champion.Identity) Serving = publisher.Monitor;
            publisher.Observe((batch, model), static (monitor, s) =>
            {
                var (b, m) = s;
                for (var k = 0; k < b.OkCount; k++)
                {
                    if (b.ServedBy(k) != m) continue;
                    var row = b.Rows[k];
                    monitor.Observe(b.FeatureRow(k), b.DefaultedMasks[row], b.ScoreRow(k)[m.PrimaryScoreIndex], b.EventTimesMs[row]);
                }
            });
        }
        if (d is null) return;
        foreach (var shadow in d.Shadows)
        {
            if (!shadow.Model.Valid || Get(shadow.Model.Identity, d) is not { } publisher) continue;
            publisher.Observe((batch, shadow.Model), static (monitor, s) =>
            {
                var (b, m) = s;
                for (var k = 0; k < b.OkCount; k++)
                {
                    var slot = m.Slots[k];
                    if (slot < 0) continue;
                    var row = b.Rows[k];
                    monitor.Observe(b.FeatureRow(k), b.DefaultedMasks[row], m.Primary(slot), b.EventTimesMs[row]);
                }
            });
        }
    }

    private DriftPublisher? Get(ModelIdentity model, ServingDeployment? d)
    {
        var key = model.ToString();
        lock (_gate)
        {
            if (_publishers.TryGetValue(key, out var known)) return known.Publisher;
        }
        var made = create(model);
        if (made is not null)
        {
            if (d?.RoleOf(model) is { } role) made.Role = role.Text();
            made.Monitor.WindowClosed += report => WindowClosed?.Invoke(model, report);
        }
        lock (_gate) _publishers[key] = (model, made);
        return made;
    }

    /// <summary>
    /// A new deployment version: each monitored model's series take its new role; a model that left the deployment
    /// is retired (its series removed, its monitor dropped; it is made afresh if it comes back).
    /// </summary>
    private void Relabel(ServingDeployment d)
    {
        _deploymentVersion = d.Version;
        var roles = d.Models.ToDictionary(m => m.Identity.ToString(), m => d.RoleOf(m.Identity));
        List<string> gone;
        lock (_gate)
        {
            gone = [.. _publishers.Keys.Where(k => !roles.ContainsKey(k))];
            foreach (var (key, (_, publisher)) in _publishers)
                if (publisher is not null && roles.TryGetValue(key, out var role) && role is { } r) publisher.Role = r.Text();
        }
        foreach (var key in gone) Retire(key);
    }

    private void Retire(string key)
    {
        DriftPublisher? publisher;
        lock (_gate)
        {
            if (!_publishers.Remove(key, out var entry)) return;
            publisher = entry.Publisher;
            if (publisher is not null)
                _retired[key] = _retired.TryGetValue(key, out var t)
                    ? (t.Observed + publisher.Monitor.Observed, t.Windows + publisher.Monitor.WindowsClosed)
                    : (publisher.Monitor.Observed, publisher.Monitor.WindowsClosed);
        }
        publisher?.Retire();
        publisher?.Dispose();
    }

    public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich) { }
    public void OnBatchPublished(EventBatch batch, TimeSpan publish) { }
    public void OnBatchDelivered(EventBatch batch, long nowMs) { }
    public void OnRetry(string stage, Exception error) { }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var (_, p) in _publishers.Values) p?.Dispose();
            _publishers.Clear();
        }
    }
}
