using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Deployment;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Confluent.Kafka;
using Parquet;
using Parquet.Schema;
using StreamInference.Batch.Features;
using StreamInference.Batch.History;
using StreamInference.Core.Deployment;
using StreamInference.Core.Features;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Onnx;
using AvroSchema = Avro.Schema;

namespace StreamInference.Batch.Replay;

public sealed record ReplayRequest
{
    public required string BootstrapServers { get; init; }
    public required string Topic { get; init; }
    /// <summary>beginning, now, an ISO-8601 time, or partition:offset pairs.</summary>
    public required string From { get; init; }
    public required string To { get; init; }
    public required string ModelDirectory { get; init; }
    public string? OutputTopic { get; init; }
    public string? OutputParquet { get; init; }
    /// <summary>Where progress is saved so an interrupted replay resumes (topic output).</summary>
    public string? CheckpointPath { get; init; }
    /// <summary>Events per second written at most (0 = unlimited), so a replay leaves room for the live processor.</summary>
    public double Rate { get; init; }
    /// <summary>ONNX Runtime intra-op threads (0 = ONNX Runtime decides).</summary>
    public int Threads { get; init; }
    public IReadOnlyDictionary<string, double>? Labels { get; init; }
    public int CheckpointEvery { get; init; } = 2_000;
    /// <summary>
    /// A challenger to score on the same feature vectors (computed once) and compare with the pinned model, window by
    /// window: a backtest of champion against challenger on the same events. Its scores are not published.
    /// </summary>
    public string? CompareModelDirectory { get; init; }
    public int CompareWindowEvents { get; init; } = 2_000;
    /// <summary>
    /// Replays a deployment (<c>--deployment</c>): its champion is the model above, its canary serves the same sticky
    /// share of entities as live (same salt, same hash), and the predictions record arm and deployment version.
    /// </summary>
    public ReplayCanary? Canary { get; init; }
    /// <summary>The deployment version stamped on the predictions (with <see cref="Canary"/> or a champion-only deployment).</summary>
    public long? DeploymentVersion { get; init; }
    /// <summary>
    /// Events before the topic's that the live features were built on (a warm start's history, materialized into Redis
    /// before the live run): features are computed over it and the topic together; only the topic's events are replayed.
    /// </summary>
    public EventHistory? PriorHistory { get; init; }
}

/// <summary>A deployment's canary in a replay: its model version directory, and the share and salt that choose its entities.</summary>
public sealed record ReplayCanary(string ModelDirectory, double Share, string Salt);

/// <summary>Progress of one partition: records written of those it has to write in this run.</summary>
public readonly record struct ReplayProgress(int Partition, long Done, long Total);

public sealed record ReplayPartition(int Partition, long Start, long End, long Resumed, long Events, long Predictions);

public sealed record ReplaySummary(
    string Topic, string Model, string ModelVersion, long Events, long Predictions, long DeadLettered, long SkippedAsDone,
    long WarmupEvents, double ElapsedSeconds, double EventsPerSecond, bool Resumed, IReadOnlyList<ReplayPartition> Partitions,
    ReplayComparison? Comparison = null, ReplayEvaluation? Evaluation = null);

/// <summary>
/// A backtest: the replayed predictions of events with labels, measured by the same code as the live evaluation
/// (<see cref="BinaryEvaluation"/>), per model that served (the champion, a canary); with --compare, the champion
/// against the challenger on the same labelled events (DeLong) and the promotion gate's decision.
/// </summary>
public sealed record ReplayEvaluation(IReadOnlyDictionary<string, BinaryMetrics> ByModel, PairedAucTest? Compared, bool? Promote, string? GateReason);

/// <summary>
/// The pinned model against a challenger over the events this run scored: the whole run as one window, and the spread
/// over the windows of <see cref="ReplayRequest.CompareWindowEvents"/> (the least agreement and rank correlation seen).
/// </summary>
public sealed record ReplayComparison(ComparisonReport Overall, int Windows, double MinWindowAgreement, double MinWindowRankCorrelation);

/// <summary>What a replay saved: enough to resume with identical output records.</summary>
public sealed class ReplayCheckpoint
{
    public string Topic { get; set; } = "";
    public string Model { get; set; } = "";
    public string From { get; set; } = "";
    public string To { get; set; } = "";
    /// <summary>The range as resolved by the first run, reused by every resume (so "now" stays what it was).</summary>
    public Dictionary<int, long[]> Ranges { get; set; } = [];
    /// <summary>Where the warm-up read starts per partition, fixed by the first run.</summary>
    public Dictionary<int, long> WarmStarts { get; set; } = [];
    public long ScoredAtMs { get; set; }
    public Dictionary<int, long> Next { get; set; } = [];
}

[JsonSerializable(typeof(ReplayCheckpoint))]
internal sealed partial class ReplayJson : JsonSerializerContext;

/// <summary>
/// Replays a range of a topic through a pinned model: reads [from, to) per partition (plus the
/// feature set's warm-up before it) with its own consumer (no group joined, nothing committed — a live
/// processor is not disturbed), computes features as of each event's time with the batch path (never
/// today's Redis), scores, and writes prediction records keyed by <c>eventId@modelVersion</c> with a
/// scored-at time fixed per replay, so a rerun or a resumed run writes identical records.
/// </summary>
public static class ReplayRunner
{
    /// <summary>The event ids and primary scores a replay wrote to Parquet (<see cref="ReplayRequest.OutputParquet"/>), every row group.</summary>
    public static async Task<(string?[] Ids, double[] Scores)> ReadScoresAsync(string path, CancellationToken ct = default)
    {
        await using var stream = File.OpenRead(path);
        await using var reader = await ParquetReader.CreateAsync(stream, cancellationToken: ct).ConfigureAwait(false);
        var fields = reader.Schema.GetDataFields();
        var (ids, scores) = (new List<string?>(), new List<double>());
        for (var g = 0; g < reader.RowGroupCount; g++)
        {
            using var rg = reader.OpenRowGroupReader(g);
            var n = (int)rg.RowCount;
            ids.AddRange(await ParquetHistory.ReadTextAsync(rg, fields.Single(f => f.Name == "event_id"), n, ct).ConfigureAwait(false));
            scores.AddRange(await ParquetHistory.ReadNumericAsync(rg, fields.Single(f => f.Name == "score"), n, ct).ConfigureAwait(false));
        }
        return ([.. ids], [.. scores]);
    }

    public static async Task<ReplaySummary> RunAsync(ReplayRequest request, FeaturePlan plan, AvroSchema readerSchema, IAvroSchemaRegistry registry,
        IProgress<ReplayProgress>? progress = null, Action<ReplayCheckpoint>? onCheckpoint = null, CancellationToken ct = default)
    {
        if ((request.OutputTopic is null) == (request.OutputParquet is null))
            throw new ArgumentException("Give exactly one destination: an output topic or a Parquet file.");
        var clock = Stopwatch.StartNew();
        using var scorer = new OnnxScorer(request.ModelDirectory, plan, new OnnxScorerOptions { IntraOpThreads = request.Threads });
        using var challenger = request.CompareModelDirectory is { } compare ? new OnnxScorer(compare, plan, new OnnxScorerOptions { IntraOpThreads = request.Threads }) : null;
        using var canaryModel = request.Canary is { } c
            ? new DeployedModel(new ModelRef("canary", "-"), new OnnxScorer(c.ModelDirectory, plan, new OnnxScorerOptions { IntraOpThreads = request.Threads }), 1024, plan.FeatureCount)
            : null;
        if (canaryModel is not null && canaryModel.Scorer.OutputWidth != scorer.OutputWidth)
            throw new InvalidDataException($"The canary {canaryModel.Identity} has {canaryModel.Scorer.OutputWidth} score column(s), the champion {scorer.OutputWidth}.");
        (DeployedModel, EntitySampler)? serving = canaryModel is null ? null : (canaryModel, new EntitySampler(request.Canary!.Salt, request.Canary.Share));

        if (request.OutputParquet is not null && request.CheckpointPath is not null)
            throw new ArgumentException("--checkpoint applies to topic output; a Parquet file is written whole, so rerun instead.");
        var model = $"{scorer.ModelName}@{scorer.ModelVersion}";

        // 1. Resume a previous run of the same replay with the range it resolved, or resolve it now.
        var checkpoint = LoadCheckpoint(request.CheckpointPath);
        var resumed = checkpoint is not null;
        if (checkpoint is not null && (checkpoint.Topic != request.Topic || checkpoint.Model != model || checkpoint.From != request.From || checkpoint.To != request.To))
            throw new InvalidOperationException($"Checkpoint '{request.CheckpointPath}' belongs to another replay ({checkpoint.Topic} {checkpoint.From}..{checkpoint.To} with {checkpoint.Model}); " +
                                                "use another checkpoint file, or delete it to start over.");
        if (checkpoint is null)
        {
            using var offsets = new TopicOffsets(request.BootstrapServers, request.Topic);
            var from = offsets.Resolve(request.From);
            var to = offsets.Resolve(request.To).ToDictionary(p => p.Partition, p => p.Offset);
            var backwards = from.Where(p => to[p.Partition] < p.Offset).Select(p => $"{p.Partition} ({p.Offset} > {to[p.Partition]})").ToArray();
            if (backwards.Length > 0) throw new ArgumentException($"--to lies before --from in partition(s) {string.Join(", ", backwards)}.");
            // Windows need history before the range: the warm-up before a start time, else from the beginning.
            var isTime = from.All(p => p.Source is OffsetSource.Broker or OffsetSource.Search);
            var warm = isTime && DateTimeOffset.TryParse(request.From, System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.AssumeUniversal, out var fromTime)
                ? offsets.ForTime(fromTime - TimeSpan.FromMilliseconds(plan.WarmupMs))
                : offsets.Resolve("beginning");
            checkpoint = new ReplayCheckpoint
            {
                Topic = request.Topic, Model = model, From = request.From, To = request.To,
                Ranges = from.ToDictionary(p => p.Partition, p => new[] { p.Offset, to[p.Partition] }),
                WarmStarts = warm.ToDictionary(p => p.Partition, p => Math.Min(p.Offset, from.Single(f => f.Partition == p.Partition).Offset)),
                ScoredAtMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
                Next = from.ToDictionary(p => p.Partition, p => p.Offset),
            };
        }
        var ranges = checkpoint.Ranges.ToDictionary(r => r.Key, r => (Start: r.Value[0], End: r.Value[1]));
        var resumeFrom = new Dictionary<int, long>(checkpoint.Next);

        // 3. History from the warm-up start to the end; features as of each event's time.
        var readRanges = ranges.ToDictionary(r => r.Key, r => (checkpoint.WarmStarts.GetValueOrDefault(r.Key, r.Value.Start), r.Value.End));
        var read = await TopicHistory.ReadAsync(request.BootstrapServers, request.Topic, registry, readerSchema, plan, request.Labels,
            null, ct, readRanges, request.PriorHistory).ConfigureAwait(false);
        var history = read.History;
        var order = history.EventTimeOrder();
        var rows = PointInTimeFeatures.Compute(history, LookupTimeline.Compute(history, history.MaxTimeMs + 1, order), eventTimeOrder: order);

        var selected = new List<int>();
        var inRange = new Dictionary<int, long>();
        long skipped = 0, warmup = 0;
        for (var i = 0; i < history.Count; i++)
        {
            if (history.Partition(i) < 0) { warmup++; continue; }   // the prior history: features only
            var (start, end) = ranges[history.Partition(i)];
            var offset = history.Offset(i);
            if (offset < start || offset >= end) { warmup++; continue; }
            inRange[history.Partition(i)] = inRange.GetValueOrDefault(history.Partition(i)) + 1;
            if (offset < checkpoint.Next[history.Partition(i)]) { skipped++; continue; }
            selected.Add(i);
        }
        selected.Sort((a, b) => history.Partition(a) != history.Partition(b)
            ? history.Partition(a).CompareTo(history.Partition(b)) : history.Offset(a).CompareTo(history.Offset(b)));

        // 4. Score and write (and compare, with a challenger).
        (OnnxScorer, ModelComparison, ModelComparison)? comparing = challenger is null ? null : (challenger,
            new ModelComparison(model, $"{challenger.ModelName}@{challenger.ModelVersion}", request.CompareWindowEvents),
            new ModelComparison(model, $"{challenger.ModelName}@{challenger.ModelVersion}", Math.Max(10, selected.Count)));
        var windowReports = new List<ComparisonReport>();
        if (comparing is var (_, perWindow, _)) perWindow.WindowClosed += windowReports.Add;
        var perPartition = ranges.Keys.ToDictionary(p => p, _ => 0L);
        // With labels (--labels), a backtest of the replayed predictions by the live evaluation's code.
        var backtest = read.Labelled > 0 ? new BacktestRows() : null;
        long written;
        if (request.OutputTopic is { } outTopic)
        {
            written = await WriteTopicAsync(comparing, serving, backtest, request, outTopic, plan, scorer, registry, history, rows, selected, checkpoint, perPartition,
                progress, onCheckpoint, ct).ConfigureAwait(false);
            if (request.CheckpointPath is not null) SaveCheckpoint(request.CheckpointPath, checkpoint);
        }
        else
        {
            written = await WriteParquetAsync(comparing, serving, backtest, request.DeploymentVersion, request.OutputParquet!, request.Topic, plan, scorer, history, rows, selected, checkpoint.ScoredAtMs, perPartition, progress, ct).ConfigureAwait(false);
        }

        ReplayComparison? comparison = null;
        // The whole-run comparison closes itself when every selected row was scored; a resumed run scores fewer.
        if (comparing is var (_, windowed, whole) && (whole.Close() ?? whole.LastReport) is { } overall)
        {
            // A last window under half the size is too small to stand beside the others (it still counts in the whole run).
            if (windowed.Close() is { } last && last.Events < windowed.WindowEvents / 2 && windowReports.Count > 1)
                windowReports.RemoveAt(windowReports.Count - 1);
            comparison = new ReplayComparison(overall, windowReports.Count,
                windowReports.Count == 0 ? double.NaN : windowReports.Min(w => w.Agreement),
                windowReports.Count == 0 ? double.NaN : windowReports.Where(w => double.IsFinite(w.RankCorrelation)).Select(w => w.RankCorrelation).DefaultIfEmpty(double.NaN).Min());
        }
        ReplayEvaluation? evaluation = null;
        if (backtest is not null)
        {
            var byModel = backtest.ByModel.ToDictionary(x => x.Key, x => BinaryEvaluation.Compute(x.Value.Scores.ToArray(), x.Value.Labels.ToArray()));
            PairedAucTest? paired = null;
            GateDecision? gate = null;
            if (backtest.PairLabels.Count > 0)
            {
                paired = DeLong.Compare(backtest.Champion.ToArray(), backtest.Challenger.ToArray(), backtest.PairLabels.ToArray());
                gate = PromotionGate.Decide(paired);
            }
            evaluation = new ReplayEvaluation(byModel, paired, gate?.Promote, gate?.Reason);
        }
        var elapsed = clock.Elapsed.TotalSeconds;
        return new ReplaySummary(request.Topic, scorer.ModelName, scorer.ModelVersion, selected.Count + skipped, written, read.DeadLettered, skipped, warmup,
            Math.Round(elapsed, 3), Math.Round(selected.Count / Math.Max(elapsed, 1e-9), 1), resumed,
            ranges.OrderBy(r => r.Key).Select(r => new ReplayPartition(r.Key, r.Value.Start, r.Value.End,
                resumeFrom.GetValueOrDefault(r.Key, r.Value.Start),
                inRange.GetValueOrDefault(r.Key),
                perPartition[r.Key])).ToArray(), comparison, evaluation);
    }

    private static async Task<long> WriteTopicAsync((OnnxScorer, ModelComparison, ModelComparison)? challenger, (DeployedModel, EntitySampler)? canary, BacktestRows? backtest, ReplayRequest request, string outTopic, FeaturePlan plan, OnnxScorer scorer, IAvroSchemaRegistry registry,
        EventHistory history, FeatureRows rows, List<int> selected, ReplayCheckpoint checkpoint, Dictionary<int, long> perPartition,
        IProgress<ReplayProgress>? progress, Action<ReplayCheckpoint>? onCheckpoint, CancellationToken ct)
    {
        var schemaId = await registry.RegisterAsync($"{outTopic}-value", PredictionWriter.Schema, ct).ConfigureAwait(false);
        var writer = new PredictionWriter(schemaId, scorer.ModelName, scorer.ModelVersion, scorer.PrimaryScoreIndex);
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = request.BootstrapServers, EnableIdempotence = true, LingerMs = 5, ClientId = "streaminference-replay",
        }).Build();
        var failed = 0;
        string? error = null;
        var pace = Stopwatch.StartNew();
        long written = 0, sinceCheckpoint = 0;
        await ScoreAsync(new ScoredRows(request.Topic, plan, scorer, history, rows, selected, perPartition, progress) { Challenger = challenger, Canary = canary, DeploymentVersion = request.DeploymentVersion, Backtest = backtest }, checkpoint.ScoredAtMs, async (batch, k, i) =>
        {
            var key = Encoding.UTF8.GetBytes($"{batch.EventIds[k]}@{scorer.ModelVersion}");
            ProducerQueue.Produce(producer, outTopic, new Message<byte[], byte[]> { Key = key, Value = writer.Write(batch, k, k) }, r =>
            {
                if (r.Error.IsError) { Interlocked.Increment(ref failed); error ??= r.Error.Reason; }
            });
            checkpoint.Next[history.Partition(i)] = history.Offset(i) + 1;
            written++;
            sinceCheckpoint++;
            if (request.Rate > 0)
            {
                var ahead = TimeSpan.FromSeconds(written / request.Rate) - pace.Elapsed;
                if (ahead > TimeSpan.FromMilliseconds(2)) await Task.Delay(ahead, ct).ConfigureAwait(false);
            }
            if (sinceCheckpoint >= request.CheckpointEvery)
            {
                // Everything up to here acknowledged, then the positions saved: a crash repeats at most this stretch.
                producer.Flush(ct);
                if (failed > 0) throw new InvalidOperationException($"Replay output to '{outTopic}' failed: {error}");
                if (request.CheckpointPath is not null) SaveCheckpoint(request.CheckpointPath, checkpoint);
                onCheckpoint?.Invoke(checkpoint);
                sinceCheckpoint = 0;
                ct.ThrowIfCancellationRequested();
            }
        }, ct).ConfigureAwait(false);
        producer.Flush(ct);
        if (failed > 0) throw new InvalidOperationException($"Replay output to '{outTopic}' failed: {error}");
        return written;
    }

    /// <summary>Reports every partition the batch [start, start + n) wrote to (rows are sorted by partition).</summary>
    private static Dictionary<int, long> Totals(EventHistory history, List<int> selected) =>
        selected.GroupBy(history.Partition).ToDictionary(g => g.Key, g => (long)g.Count());

    private static void Report(IProgress<ReplayProgress>? progress, EventHistory history, List<int> selected, int start, int n,
        Dictionary<int, long> perPartition, Dictionary<int, long> totals)
    {
        if (progress is null || n == 0) return;
        var last = -1;
        for (var k = start; k < start + n; k++)
        {
            var p = history.Partition(selected[k]);
            if (p == last) continue;
            last = p;
            progress.Report(new ReplayProgress(p, perPartition[p], totals[p]));
        }
    }


    /// <summary>The replayed rows that carry a label: each serving model's scores, and the champion/challenger pairs.</summary>
    private sealed class BacktestRows
    {
        public readonly Dictionary<string, (List<double> Scores, List<bool> Labels)> ByModel = new(StringComparer.Ordinal);
        public readonly List<double> Champion = [];
        public readonly List<double> Challenger = [];
        public readonly List<bool> PairLabels = [];
    }

    /// <summary>What one replay scores: the selected history rows, their point-in-time features, and the model.</summary>
    private sealed record ScoredRows(string Topic, FeaturePlan Plan, OnnxScorer Scorer, EventHistory History, FeatureRows Rows, List<int> Selected,
        Dictionary<int, long> PerPartition, IProgress<ReplayProgress>? Progress)
    {
        /// <summary>The challenger and the comparisons it feeds (per window, and the whole run), when comparing.</summary>
        public (OnnxScorer Scorer, ModelComparison Windows, ModelComparison Overall)? Challenger { get; init; }
        /// <summary>Labelled rows for the backtest: per serving model, and the champion/challenger pairs when comparing.</summary>
        public BacktestRows? Backtest { get; init; }
        /// <summary>A deployment's canary and the entities it serves.</summary>
        public (DeployedModel Model, EntitySampler Select)? Canary { get; init; }
        public long? DeploymentVersion { get; init; }
    }

    /// <summary>
    /// Scores the selected rows in batches (in their order) and hands each scored row to <paramref name="write"/>
    /// as (batch, row in the batch, history row); counts and reports progress per partition.
    /// </summary>
    private static async Task ScoreAsync(ScoredRows r, long scoredAtMs, Func<EventBatch, int, int, ValueTask> write, CancellationToken ct)
    {
        var batch = new EventBatch(r.Plan, 1024, r.Scorer.OutputWidth);
        EventBatch? compare = null;
        // Replayed records come from history: a source partition, no offset tracking (a replay commits nothing).
        var sources = new Dictionary<int, SourcePartition>();
        var totals = Totals(r.History, r.Selected);
        for (var start = 0; start < r.Selected.Count; start += batch.Capacity)
        {
            ct.ThrowIfCancellationRequested();
            var n = Math.Min(batch.Capacity, r.Selected.Count - start);
            Fill(batch, r, start, n, sources);
            batch.ScoredAtMs = scoredAtMs;
            var started = Stopwatch.GetTimestamp();
            r.Scorer.Score(batch);
            batch.DeploymentVersion = r.DeploymentVersion;
            // The deployment's canary, as live: the same entities, scored on the same vectors, served in place of the
            // champion (after any --compare, which compares the champion's own scores).
            if (r.Canary is var (canary, select)) canary.Score(batch, select);
            if (r.Challenger is var (challenger, windows, overall))
            {
                var championTime = Stopwatch.GetElapsedTime(started);
                compare ??= new EventBatch(r.Plan, batch.Capacity, challenger.OutputWidth);
                batch.Features.AsSpan(0, n * r.Plan.FeatureCount).CopyTo(compare.Features);
                compare.Count = compare.OkCount = n;
                started = Stopwatch.GetTimestamp();
                challenger.Score(compare);
                var challengerTime = Stopwatch.GetElapsedTime(started);
                foreach (var c in new[] { windows, overall })
                {
                    c.ObserveCost(challenger: false, n, championTime);
                    c.ObserveCost(challenger: true, n, challengerTime);
                    for (var k = 0; k < n; k++)
                        c.Observe(batch.ScoreRow(k)[r.Scorer.PrimaryScoreIndex], compare.ScoreRow(k)[challenger.PrimaryScoreIndex]);
                }
                if (r.Backtest is { } pairs)
                    for (var k = 0; k < n; k++)
                    {
                        var y = r.History.Label(r.Selected[start + k]);
                        if (double.IsNaN(y)) continue;
                        pairs.Champion.Add(batch.ScoreRow(k)[r.Scorer.PrimaryScoreIndex]);
                        pairs.Challenger.Add(compare.ScoreRow(k)[challenger.PrimaryScoreIndex]);
                        pairs.PairLabels.Add(y > 0.5);
                    }
            }
            if (r.Canary is var (served, _)) served.ServeInto(batch, ServingArm.Canary);
            if (r.Backtest is { } backtest)
                for (var k = 0; k < n; k++)
                {
                    var y = r.History.Label(r.Selected[start + k]);
                    if (double.IsNaN(y)) continue;
                    var model = batch.ServedBy(k)!;
                    if (!backtest.ByModel.TryGetValue(model.ToString(), out var rowsOf)) backtest.ByModel[model.ToString()] = rowsOf = ([], []);
                    rowsOf.Scores.Add(batch.ScoreRow(k)[model.PrimaryScoreIndex]);
                    rowsOf.Labels.Add(y > 0.5);
                }
            for (var k = 0; k < n; k++)
            {
                var i = r.Selected[start + k];
                await write(batch, k, i).ConfigureAwait(false);
                r.PerPartition[r.History.Partition(i)]++;
            }
            Report(r.Progress, r.History, r.Selected, start, n, r.PerPartition, totals);
        }
    }

    private static void Fill(EventBatch batch, ScoredRows r, int start, int n, Dictionary<int, SourcePartition> sources)
    {
        var history = r.History;
        batch.Reset();
        batch.Count = n;
        batch.OkCount = n;
        for (var k = 0; k < n; k++)
        {
            var i = r.Selected[start + k];
            var p = history.Partition(i);
            if (!sources.TryGetValue(p, out var source)) sources[p] = source = new SourcePartition(r.Topic, p);
            batch.Records[k] = new InputRecord(source, 0, history.Offset(i), null, null, history.TimeMs(i), null);
            batch.Rows[k] = k;
            batch.EventIds[k] = history.Id(i);
            batch.EntityKeys[k] = history.EntityKey(i);
            batch.EventTimesMs[k] = history.TimeMs(i);
            batch.DefaultedCounts[k] = System.Numerics.BitOperations.PopCount((ulong)r.Rows.DefaultedMask[i]);
            r.Rows.Row(i).CopyTo(batch.FeatureRow(k));
        }
    }

    private static async Task<long> WriteParquetAsync((OnnxScorer, ModelComparison, ModelComparison)? challenger, (DeployedModel, EntitySampler)? canary, BacktestRows? backtest, long? deploymentVersion, string path, string topic, FeaturePlan plan, OnnxScorer scorer, EventHistory history, FeatureRows rows,
        List<int> selected, long scoredAtMs, Dictionary<int, long> perPartition, IProgress<ReplayProgress>? progress, CancellationToken ct)
    {
        var ids = new string[selected.Count];
        var times = new long[selected.Count];
        var entities = new string[selected.Count];
        var partitions = new int[selected.Count];
        var offsets = new long[selected.Count];
        var scores = new double[selected.Count];
        var defaulted = new int[selected.Count];
        var models = new string[selected.Count];
        var versions = new string[selected.Count];
        var arms = new string[selected.Count];
        var at = 0;
        await ScoreAsync(new ScoredRows(topic, plan, scorer, history, rows, selected, perPartition, progress) { Challenger = challenger, Canary = canary, DeploymentVersion = deploymentVersion, Backtest = backtest }, scoredAtMs, (batch, k, i) =>
        {
            (ids[at], times[at], entities[at]) = (history.Id(i), history.TimeMs(i), history.EntityKey(i));
            (partitions[at], offsets[at]) = (history.Partition(i), history.Offset(i));
            var model = batch.ServedBy(k)!;
            scores[at] = batch.ScoreRow(k)[model.PrimaryScoreIndex];
            (models[at], versions[at], arms[at]) = (model.Name, model.Version, batch.Arms[k].Text());
            defaulted[at++] = batch.DefaultedCounts[k];
            return ValueTask.CompletedTask;
        }, ct).ConfigureAwait(false);
        var fields = new DataField[]
        {
            new DataField<string>("event_id"), new DataField<long>("event_time_ms"), new DataField<string>("entity_key"),
            new DataField<int>("partition"), new DataField<long>("offset"), new DataField<double>("score"),
            new DataField<int>("features_defaulted"), new DataField<string>("model_version"), new DataField<long>("scored_at_ms"),
            new DataField<string>("model_name"), new DataField<string>("arm"),
        };
        // Written to a temporary file and moved into place: a rerun replaces the file whole.
        var temp = path + ".partial";
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await using (var stream = File.Create(temp))
        await using (var parquet = await ParquetWriter.CreateAsync(new ParquetSchema(fields), stream, cancellationToken: ct).ConfigureAwait(false))
        {
            using var rg = parquet.CreateRowGroup();
            await rg.WriteAsync(fields[0], ids).ConfigureAwait(false);
            await rg.WriteAsync<long>(fields[1], times).ConfigureAwait(false);
            await rg.WriteAsync(fields[2], entities).ConfigureAwait(false);
            await rg.WriteAsync<int>(fields[3], partitions).ConfigureAwait(false);
            await rg.WriteAsync<long>(fields[4], offsets).ConfigureAwait(false);
            await rg.WriteAsync<double>(fields[5], scores).ConfigureAwait(false);
            await rg.WriteAsync<int>(fields[6], defaulted).ConfigureAwait(false);
            await rg.WriteAsync(fields[7], versions).ConfigureAwait(false);
            await rg.WriteAsync<long>(fields[8], Enumerable.Repeat(scoredAtMs, selected.Count).ToArray()).ConfigureAwait(false);
            await rg.WriteAsync(fields[9], models).ConfigureAwait(false);
            await rg.WriteAsync(fields[10], arms).ConfigureAwait(false);
        }
        File.Move(temp, path, overwrite: true);
        return selected.Count;
    }

    private static ReplayCheckpoint? LoadCheckpoint(string? path)
    {
        if (path is null || !File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), ReplayJson.Default.ReplayCheckpoint);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Checkpoint '{path}' is unreadable ({e.Message}); delete it to start the replay over.", e);
        }
    }

    private static void SaveCheckpoint(string path, ReplayCheckpoint checkpoint)
    {
        var temp = path + ".tmp";
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(temp, JsonSerializer.Serialize(checkpoint, ReplayJson.Default.ReplayCheckpoint));
        File.Move(temp, path, overwrite: true);
    }
}
