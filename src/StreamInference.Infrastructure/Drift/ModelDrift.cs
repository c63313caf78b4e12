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
    private readonly Dictionary<ModelIdentity, DriftPublisher?> _publishers = [];
    private readonly List<ModelIdentity> _seen = new(4);
    private readonly Lock _gate = new();
    private long _deploymentVersion = -1;

    /// <summary>The monitors made so far, by model.</summary>
    public IReadOnlyDictionary<ModelIdentity, DriftMonitor> Monitors
    {
        get
        {
            lock (_gate) return _publishers.Where(p => p.Value is not null).ToDictionary(p => p.Key, p => p.Value!.Monitor);
        }
    }

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
        lock (_gate)
        {
            if (_publishers.TryGetValue(model, out var known)) return known;
        }
        var made = create(model);
        if (made is not null)
        {
            if (d?.RoleOf(model) is { } role) made.Role = role.Text();
            made.Monitor.WindowClosed += report => WindowClosed?.Invoke(model, report);
        }
        lock (_gate) _publishers[model] = made;
        return made;
    }

    /// <summary>A new deployment version: each monitored model's series take its new role.</summary>
    private void Relabel(ServingDeployment d)
    {
        _deploymentVersion = d.Version;
        lock (_gate)
        {
            foreach (var (model, publisher) in _publishers)
                if (publisher is not null && d.RoleOf(model) is { } role) publisher.Role = role.Text();
        }
    }

    public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich) { }
    public void OnBatchPublished(EventBatch batch, TimeSpan publish) { }
    public void OnBatchDelivered(EventBatch batch, long nowMs) { }
    public void OnRetry(string stage, Exception error) { }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var p in _publishers.Values) p?.Dispose();
            _publishers.Clear();
        }
    }
}
