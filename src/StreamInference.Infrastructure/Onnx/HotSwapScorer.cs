using Microsoft.Extensions.Logging;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>
/// Serves the newest version of a model and follows the model repository: a version directory that
/// appears is loaded, validated against the feature set and warmed up on a background thread, then
/// swapped in between two batches (the score stage picks it up before its next batch, so a batch is
/// always scored by exactly one fully loaded model). A version that fails to load (corrupt file,
/// wrong inputs, other feature set, other output width) is rejected with a log line and the current
/// one keeps serving; it is tried again only when its files change (e.g. a copy that was still running).
/// </summary>
public sealed partial class HotSwapScorer : IScorer, IDisposable
{
    private readonly string _repository;
    private readonly string _name;
    private readonly FeaturePlan _plan;
    private readonly OnnxScorerOptions _options;
    private readonly ILogger _log;
    private readonly Timer? _timer;
    private readonly Dictionary<string, string> _tried = [];   // version directory → file signature last tried
    private OnnxScorer _current;
    private OnnxScorer? _pending;
    private int _checking;

    public HotSwapScorer(OnnxScorer initial, string repository, string name, FeaturePlan plan, OnnxScorerOptions options,
        ILogger log, TimeSpan watchInterval)
    {
        _current = initial;
        _repository = repository;
        _name = name;
        _plan = plan;
        _options = options;
        _log = log;
        _tried[Path.GetFullPath(initial.Directory)] = Signature(initial.Directory);
        if (watchInterval > TimeSpan.Zero) _timer = new Timer(_ => CheckForNewVersion(), null, watchInterval, watchInterval);
    }

    /// <summary>Called on the score stage after a swap, with the previous and the new model.</summary>
    public Action<ModelIdentity, ModelIdentity, string>? Swapped { get; init; }

    /// <summary>Called (on the watcher thread) when a new version was rejected, with the reason.</summary>
    public Action<string, string>? Rejected { get; init; }

    public OnnxScorer Current => Volatile.Read(ref _current);
    public string ModelName => Current.ModelName;
    public string ModelVersion => Current.ModelVersion;
    public int OutputWidth => Current.OutputWidth;
    public int PrimaryScoreIndex => Current.PrimaryScoreIndex;

    public void Score(EventBatch batch)
    {
        if (Interlocked.Exchange(ref _pending, null) is { } next)
        {
            var previous = _current;
            Volatile.Write(ref _current, next);
            previous.Dispose(); // only the score stage runs sessions, and it is here
            Log.SwappedIn(_log, previous.Identity.ToString(), next.Identity.ToString());
            Swapped?.Invoke(previous.Identity, next.Identity, next.Directory);
        }
        _current.Score(batch);
    }

    /// <summary>Looks for a newer version once (the timer calls this; tests may too).</summary>
    public void CheckForNewVersion()
    {
        if (Interlocked.Exchange(ref _checking, 1) == 1) return;
        try
        {
            if (_disposed) return;
            string dir;
            try
            {
                dir = Path.GetFullPath(ModelRepository.Resolve(_repository, _name, "latest"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return; // repository emptied, moved or unreadable: keep serving
            }
            var signature = Signature(dir);
            if (_tried.TryGetValue(dir, out var seen) && seen == signature) return;
            _tried[dir] = signature;
            OnnxScorer candidate;
            try
            {
                candidate = new OnnxScorer(dir, _plan, _options);
            }
            catch (Exception e)
            {
                // Whatever a bad version throws (corrupt file, odd manifest): reject it, keep serving.
                Reject(dir, e.Message);
                return;
            }
            var current = Current;
            string? why = candidate.ModelName != current.ModelName ? $"its manifest names model '{candidate.ModelName}', not '{current.ModelName}'"
                : candidate.OutputWidth != current.OutputWidth ? $"it has {candidate.OutputWidth} score column(s), the serving model {current.OutputWidth}"
                : null;
            if (why is not null)
            {
                candidate.Dispose();
                Reject(dir, why);
                return;
            }
            if (_disposed)
            {
                candidate.Dispose();
                return;
            }
            Log.Ready(_log, candidate.Identity.ToString(), dir);
            foreach (var warning in candidate.Warnings) Log.ModelWarning(_log, warning);
            Interlocked.Exchange(ref _pending, candidate)?.Dispose();
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    private void Reject(string dir, string why)
    {
        Log.RejectedVersion(_log, dir, why, Current.Identity.ToString());
        Rejected?.Invoke(dir, why);
    }

    /// <summary>Sizes and modification times of the files that make a version: a copy in progress changes it.</summary>
    private static string Signature(string dir)
    {
        static string Of(string path)
        {
            var f = new FileInfo(path);
            return f.Exists ? $"{f.Length}:{f.LastWriteTimeUtc.Ticks}" : "-";
        }
        return Of(Path.Combine(dir, "model.onnx")) + "|" + Of(Path.Combine(dir, "manifest.json"));
    }

    private volatile bool _disposed;

    public void Dispose()
    {
        _disposed = true;
        _timer?.Dispose();
        while (Volatile.Read(ref _checking) == 1) Thread.Sleep(5);
        Interlocked.Exchange(ref _pending, null)?.Dispose();
        _current.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} loaded and warmed from {Directory}; swapping it in before the next batch")]
        public static partial void Ready(ILogger logger, string model, string directory);

        [LoggerMessage(Level = LogLevel.Warning, Message = "{Warning}")]
        public static partial void ModelWarning(ILogger logger, string warning);

        [LoggerMessage(Level = LogLevel.Information, Message = "Model swapped: {Previous} → {Next}")]
        public static partial void SwappedIn(ILogger logger, string previous, string next);

        [LoggerMessage(Level = LogLevel.Error, Message = "Model version {Directory} rejected: {Reason}; {Current} keeps serving")]
        public static partial void RejectedVersion(ILogger logger, string directory, string reason, string current);
    }
}
