using System.Diagnostics;
using System.Globalization;
using StreamInference.Core.Drift;
using StreamInference.Core.Deployment;
using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Onnx;
using StreamInference.DevServices.Kafka;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;
using StreamInference.Core.Features;
using StreamInference.DevServices;
using StreamInference.DevServices.Synthetic;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Evaluation;
using StreamInference.Infrastructure.Processing;
using AvroSchema = Avro.Schema;

namespace StreamInference.Cli;

/// <summary>
/// The one-command demo: embedded services, the synthetic upstream producer, the processor and a
/// downstream reader that audits every input record, with a live view on stderr and, for a bounded
/// run, one final JSON line on stdout.
/// </summary>
public static class DemoRunner
{
    public static async Task<int> RunAsync(DemoSettings s, CancellationToken ct)
    {
        if (s.Events is < 1 || s.Rate < 0 || s.BadRate is < 0 or > 1 || s.MaxBatch < 1 || s.Partitions < 1 || s.DriftAt is < 0 || s.DriftWindow < 10)
        {
            await Console.Error.WriteLineAsync("demo: --events >= 1, --rate >= 0, --bad-rate within 0..1, --max-batch >= 1, --partitions >= 1, --drift-at >= 0, --drift-window >= 10.").ConfigureAwait(false);
            return 2;
        }
        if (s.Spike && (s.Events is null || s.Rate <= 0))
        {
            await Console.Error.WriteLineAsync("demo: --spike needs a bounded run (--events) at a --rate above 0: the middle third comes at 5× the rate.").ConfigureAwait(false);
            return 2;
        }
        var redisUrl = Environment.GetEnvironmentVariable("REDIS_URL");
        const string input = "payments", output = "predictions", dlq = "payments.dlq";
        Status(s, "starting embedded Kafka-protocol cluster, schema registry and " + (redisUrl is null ? "Garnet" : "Redis at REDIS_URL") + " ...");
        await using var env = await DevEnvironment.StartAsync(new DevEnvironmentOptions
        {
            Topics = new()
            {
                [input] = s.Partitions, [output] = s.Partitions, [dlq] = 1, [DriftTopic] = 1, [output + ".shadow"] = s.Partitions, [output + ".comparison"] = 1,
                [LabelsTopic] = s.Partitions, [output + ".evaluation"] = 1,
            },
            ExternalRedis = redisUrl is null ? null : RedisUrl.ToConfiguration(redisUrl),
        }, ct).ConfigureAwait(false);

        var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve("schemas/features/card_payments.yaml"));
        var clockOffset = s.StartTime is { } startAt ? startAt - DateTimeOffset.UtcNow : TimeSpan.Zero;
        // Ground truth: each event's label after a delay drawn from label.knownAfter, a day of it passing in a second.
        var knownAfter = plan.LabelKnownAfterMs > 0 ? plan.LabelKnownAfterMs : 86_400_000;
        var labelsTopic = s.Labels ? LabelsTopic : null;
        var produceOptions = new ProduceOptions { Topic = input, Rate = s.Rate, BadRate = s.BadRate, ClockOffset = clockOffset, LabelsTopic = labelsTopic, LabelKnownAfterMs = knownAfter };
        if (s.StartTime is { } simulated) Status(s, $"simulated clock: event times start at {simulated:yyyy-MM-dd HH:mm} UTC");
        var warmAt = DateTimeOffset.UtcNow + clockOffset;
        var warmHistory = WarmStart.History(plan, warmAt, produceOptions.WorldSeed);
        using (var redis = await ConnectionMultiplexer.ConnectAsync(env.Endpoints.Redis).ConfigureAwait(false))
        {
            Status(s, "batch path: synthetic 35-day history → lookups and window state into Redis ...");
            var warm = await WarmStart.MaterializeAsync(redis.GetDatabase(), plan, warmHistory, warmAt, ct).ConfigureAwait(false);
            Status(s, $"materialized {warm.LookupHashes:N0} lookup hashes and the windows of {warm.WindowEntities:N0} entities");
        }

        var options = new ProcessorOptions
        {
            Kafka = new KafkaOptions
            {
                BootstrapServers = env.Endpoints.BootstrapServers, GroupId = "streaminference-demo", InputTopic = input, OutputTopic = output, DeadLetterTopic = dlq,
                // The embedded cluster answers a fetch that finds no data only after the whole fetch.wait.max.ms
                // (500 ms by default), even when records arrive meanwhile; a real broker answers at once.
                Consumer = new Confluent.Kafka.ConsumerConfig { FetchWaitMaxMs = 10 },
            },
            SchemaRegistry = new SchemaRegistryOptions { Url = env.Endpoints.SchemaRegistryUrl },
            Redis = new RedisOptions { Configuration = env.Endpoints.Redis },
            Pipeline = new PipelineSettings { MaxBatchSize = s.MaxBatch },
            Drift = new DriftOptions { Topic = DriftTopic, WindowEvents = s.DriftWindow },
            // The label join on the demo's clock, where a day of label delay passes in a second: a horizon of ten days (ten
            // seconds), beyond every label's delay (at most three days) and the few seconds the evaluation's reading of
            // the prediction and label topics may drift apart while the processor works through its backlog.
            Evaluation = new EvaluationOptions
            {
                LabelsTopic = LabelsTopic, HorizonMs = Math.Max(1, (long)(10 * knownAfter * produceOptions.LabelTimeScale)),
                WindowMs = 5_000, ArrivalWindowEvents = 5_000, ReportIntervalMs = 500,
            },
        };
        if (s.Model is { } pinned)
        {
            var at = pinned.IndexOf('@', StringComparison.Ordinal);
            options.Model.Name = at < 0 ? pinned : pinned[..at];
            if (at >= 0) options.Model.Version = pinned[(at + 1)..];
        }
        string? deploymentDir = null;
        if (s.Challenger is { } challengerText)
        {
            try
            {
                deploymentDir = Deploy(options, challengerText, s);
            }
            catch (Exception e) when (e is DeploymentException or FileNotFoundException or InvalidDataException)
            {
                await Console.Error.WriteLineAsync($"demo: {e.Message}").ConfigureAwait(false);
                return 2;
            }
        }
        using var cleanup = new DirectoryCleanup(deploymentDir);
        using var loggers = LoggerFactory.Create(b => b
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
            .AddFilter(level => level >= (s.Quiet ? LogLevel.Error : LogLevel.Warning)));
        // Logs go to stderr like the live view; stdout carries only the final JSON line.
        var processor = new StreamProcessor(options, loggers, Metrics.WithCustomRegistry(Metrics.NewCustomRegistry()))
        {
            DecorateCommit = MirroredTransactionalOffsets.Decorate(loggers.CreateLogger<MirroredTransactionalOffsets>()),
        };
        using var stopProcessor = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var processing = processor.RunSupervisedAsync(stopProcessor.Token);
        // Produce once the group has assigned partitions, so latency figures do not include the join.
        var joinDeadline = Stopwatch.StartNew();
        while ((!processor.IsReady || processor.AssignedPartitions == 0) && !processing.IsCompleted && joinDeadline.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(20, ct).ConfigureAwait(false);
        if (processing.IsCompleted)
        {
            await processing.ConfigureAwait(false); // surfaces the startup error
            return 1;
        }

        // Every closed drift window is shown (the monitor calls back on the score stage's thread).
        if (processor.Drift is { } monitor) monitor.WindowClosed += DriftWindows.Enqueue;
        // With a challenger: each comparison window and each tier switch, once, in the live view.
        var comparisons = new List<ComparisonReport>();
        var switches = new List<TierSwitch>();
        if (processor.DeploymentTelemetry is { } telemetry)
        {
            telemetry.Compared += (report, _) =>
            {
                lock (comparisons) comparisons.Add(report);
                DeploymentLines.Enqueue(string.Create(CultureInfo.InvariantCulture,
                    $"comparison {report.Sequence} ({report.Events:N0} events): {report.Challenger} vs {report.Champion}: agreement {report.Agreement:P2}, |Δ| p50 {report.AbsDifferenceP50:0.0000} p99 {report.AbsDifferenceP99:0.000}, Spearman {report.RankCorrelation:0.000}, µs/row {report.ChampionMicrosPerRow:0.00} vs {report.ChallengerMicrosPerRow:0.00}"));
            };
            telemetry.TierSwitched += change =>
            {
                lock (switches) switches.Add(change);
                DeploymentLines.Enqueue($"serving tier → {(change.To == Core.Deployment.ServingTier.Fallback ? "FALLBACK " + s.Challenger : "champion")}: {change.Reason}");
            };
        }
        using var registry = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = env.Endpoints.SchemaRegistryUrl });
        using var audit = new PredictionAudit(env.Endpoints.BootstrapServers, registry, output, dlq);
        using var stopAudit = new CancellationTokenSource();
        var auditing = audit.RunAsync(stopAudit.Token);
        // The live evaluation (what `streaminference evaluate` runs): labels joined to the champion's and the shadow's predictions.
        using var evaluationRedis = s.Labels ? await ConnectionMultiplexer.ConnectAsync(env.Endpoints.Redis).ConfigureAwait(false) : null;
        var evaluator = evaluationRedis is null ? null : new LiveEvaluator(options, options.Evaluation.HorizonMs, evaluationRedis.GetDatabase(), registry,
            Metrics.WithCustomRegistry(Metrics.NewCustomRegistry()), loggers, EvaluateCommand.ReferenceAucs(options.Model.Repository));
        if (evaluator is not null) evaluator.Reported += w => DeploymentLines.Enqueue(EvaluateCommand.Describe(w));
        using var stopEvaluator = new CancellationTokenSource();
        var evaluating = evaluator?.RunAsync(stopEvaluator.Token) ?? Task.CompletedTask;

        var writer = (Avro.RecordSchema)AvroSchema.Parse(await File.ReadAllTextAsync(PathResolver.Resolve("schemas/payment-event.avsc"), ct).ConfigureAwait(false));
        var produced = new List<ProducedRecord>();
        var producedCount = 0;
        var clock = Stopwatch.StartNew();
        var producing = Task.Run(async () =>
        {
            // Bounded run: one batch of N. Unbounded: chunks with fresh seeds until Ctrl+C.
            for (var chunk = 0; ; chunk++)
            {
                var n = s.Events ?? 50_000;
                var o = new ProduceOptions
                {
                    Topic = input, Events = n, Rate = s.Rate, BadRate = s.BadRate, Seed = produceOptions.Seed + chunk, ClockOffset = clockOffset,
                    LabelsTopic = labelsTopic, LabelKnownAfterMs = knownAfter,
                    DriftAt = s.DriftAt is { } at ? Math.Max(0, at - chunk * n) : null,   // index within this chunk
                };
                var baseCount = producedCount;
                ProduceSummary summary;
                if (s.Spike)
                {
                    // Three legs: the rate, 5× the rate (the spike), the rate again.
                    var legs = new List<ProduceSummary>();
                    var third = n / 3;
                    foreach (var (events, rate, seed) in new[] { (third, s.Rate, 0), (third, 5 * s.Rate, 1), (n - 2 * third, s.Rate, 2) })
                    {
                        if (rate > s.Rate) DeploymentLines.Enqueue(string.Create(CultureInfo.InvariantCulture, $"spike: {events:N0} events at {rate:N0}/s"));
                        var before = producedCount;
                        legs.Add(await SyntheticPaymentProducer.ProduceAsync(env.Endpoints.BootstrapServers, registry, writer,
                            new ProduceOptions
                            {
                                Topic = input, Events = events, Rate = rate, BadRate = s.BadRate, Seed = o.Seed * 10 + seed, ClockOffset = clockOffset,
                                LabelsTopic = labelsTopic, LabelKnownAfterMs = knownAfter,
                            },
                            i => Volatile.Write(ref producedCount, before + i), ct).ConfigureAwait(false));
                        Volatile.Write(ref producedCount, before + events);
                    }
                    summary = new ProduceSummary(legs.Sum(l => l.Produced), legs.Sum(l => l.Malformed), legs.Sum(l => l.Failed),
                        TimeSpan.FromTicks(legs.Sum(l => l.Elapsed.Ticks)), [.. legs.SelectMany(l => l.Records)]);
                }
                else
                {
                    summary = await SyntheticPaymentProducer.ProduceAsync(env.Endpoints.BootstrapServers, registry, writer, o,
                        i => Volatile.Write(ref producedCount, baseCount + i), ct).ConfigureAwait(false);
                }
                if (s.Events is not null)
                {
                    produced.AddRange(summary.Records);
                    return summary;
                }
            }
        }, ct);

        var lastProgress = (Count: -1, At: clock.Elapsed);
        ProduceSummary? final = null;
        try
        {
            while (true)
            {
                await Task.WhenAny(Task.Delay(1000, ct), processing).ConfigureAwait(false);
                if (processing.IsCompleted) break;
                LiveLine(s, clock.Elapsed, Volatile.Read(ref producedCount), audit, processor);
                if (producing.IsCompleted)
                {
                    final = await producing.ConfigureAwait(false);
                    var accounted = audit.Predicted + audit.DeadLettered;
                    if (accounted >= final.Produced) break;
                    if (accounted != lastProgress.Count) lastProgress = (accounted, clock.Elapsed);
                    else if (clock.Elapsed - lastProgress.At > TimeSpan.FromSeconds(30)) break; // no progress: report what is lost
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        var elapsed = clock.Elapsed;
        // Every label produced (the producer waited for the last one's delay) read by the evaluation, then its figures.
        var evaluationDeadline = Stopwatch.StartNew();
        while (evaluator is not null && s.Events is not null && !ct.IsCancellationRequested && !evaluating.IsCompleted && evaluationDeadline.Elapsed < TimeSpan.FromSeconds(30)
               && !(evaluator.Lag == 0 && evaluator.Processed > 0))
            await Task.Delay(200, ct).ConfigureAwait(false);
        await stopEvaluator.CancelAsync().ConfigureAwait(false);
        try
        {
            await evaluating.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        LiveLine(s, clock.Elapsed, Volatile.Read(ref producedCount), audit, processor);
        await stopProcessor.CancelAsync().ConfigureAwait(false);
        try
        {
            await processing.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        await stopAudit.CancelAsync().ConfigureAwait(false);
        await auditing.ConfigureAwait(false);
        if (!s.Quiet) Console.Error.WriteLine();
        if (s.Events is null || final is null) return 0;

        var lost = 0;
        var mismatched = 0;
        foreach (var r in produced)
        {
            if (audit.Predictions.TryGetValue((r.Partition, r.Offset), out var eventId))
            {
                if (r.EventId is not null && eventId != r.EventId) mismatched++;
            }
            else if (!audit.DeadLetters.ContainsKey((r.Partition, r.Offset))) lost++;
        }
        var evaluation = evaluator is null ? null
            : await EvaluationSummaryAsync(s, env.Endpoints.BootstrapServers, registry, plan, options, evaluator, warmHistory, input, ct).ConfigureAwait(false);
        var metrics = processor.Metrics!;
        var result = new DemoResult(
            final.Produced, audit.Predicted, audit.DeadLettered, lost, audit.Duplicates, mismatched,
            Math.Round(elapsed.TotalSeconds, 2),
            Math.Round((audit.Predicted + audit.DeadLettered) / Math.Max(elapsed.TotalSeconds, 1e-9), 1),
            metrics.Batches, Math.Round(metrics.BatchedRecords / (double)Math.Max(1, metrics.Batches), 1),
            metrics.Latency.PercentileMicroseconds(0.50) / 1000.0,
            metrics.Latency.PercentileMicroseconds(0.95) / 1000.0,
            metrics.Latency.PercentileMicroseconds(0.99) / 1000.0,
            audit.DeadLetters.Values.GroupBy(v => v).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()),
            options.Model.Name,
            processor.Drift?.WindowsClosed ?? 0,
            processor.Drift?.LastReport is { } last
                ? last.Features.Append(last.Prediction).Where(f => f.Severity == DriftSeverity.Alert).Select(f => f.Name).ToArray()
                : [],
            DriftVerdict(processor.Drift, s),
            s.Challenger is null ? null : Summarize(options, s.Challenger, comparisons, switches, processor),
            evaluation);
        Console.Out.WriteLine(JsonSerializer.Serialize(result, CliJson.Default.DemoResult));
        return lost == 0 && mismatched == 0 ? 0 : 1;
    }

    /// <summary>
    /// The live evaluation's figures per model and arm over every labelled prediction, beside a replay backtest of the
    /// same events: each model replayed over the input topic (features over the warm start's history and the topic,
    /// as live), its scores taken for exactly the events the live evaluation labelled for it, with the same labels.
    /// </summary>
    private static async Task<DemoEvaluation> EvaluationSummaryAsync(DemoSettings s, string bootstrap, AvroSchemaRegistry registry, FeaturePlan plan,
        ProcessorOptions options, LiveEvaluator evaluator, StreamInference.Batch.History.EventHistory warmHistory, string input, CancellationToken ct)
    {
        var live = await evaluator.LabelledAsync().ConfigureAwait(false);
        var counts = evaluator.Counts;
        Status(s, $"label join: {counts}");
        var labels = await LabelTopic.ReadAllAsync(bootstrap, registry, LabelsTopic, ct).ConfigureAwait(false);
        var repository = PathResolver.Resolve(options.Model.Repository);
        var reader = AvroSchema.Parse(await File.ReadAllTextAsync(PathResolver.Resolve(options.Features.ReaderSchema), ct).ConfigureAwait(false));
        var replayed = new Dictionary<string, Dictionary<string, double>>(StringComparer.Ordinal);
        foreach (var model in live.Keys.Select(k => k.Model).Distinct(StringComparer.Ordinal))
        {
            Status(s, $"backtest: replaying the input topic with {model} (features over the warm start's history and the topic) ...");
            var parquet = Path.Combine(Path.GetTempPath(), $"streaminference-demo-backtest-{Guid.NewGuid():N}.parquet");
            try
            {
                var at = model.LastIndexOf('@');
                await Batch.Replay.ReplayRunner.RunAsync(new Batch.Replay.ReplayRequest
                {
                    BootstrapServers = bootstrap, Topic = input, From = "beginning", To = "now", OutputParquet = parquet, Labels = labels, PriorHistory = warmHistory,
                    ModelDirectory = ModelRepository.Resolve(repository, model[..at], model[(at + 1)..]),
                }, plan, reader, registry, ct: ct).ConfigureAwait(false);
                var (ids, scores) = await Batch.Replay.ReplayRunner.ReadScoresAsync(parquet, ct).ConfigureAwait(false);
                var byId = new Dictionary<string, double>(StringComparer.Ordinal);
                for (var i = 0; i < ids.Length; i++) if (ids[i] is { } id) byId[id] = scores[i];
                replayed[model] = byId;
            }
            finally
            {
                File.Delete(parquet);
            }
        }
        var models = new List<DemoModelEvaluation>();
        foreach (var ((model, arm), (ids, scores, ys)) in live.OrderBy(x => x.Key.Arm == "champion" ? 0 : 1).ThenBy(x => x.Key.Model, StringComparer.Ordinal).ThenBy(x => x.Key.Arm, StringComparer.Ordinal))
        {
            var m = BinaryEvaluation.Compute(scores, ys, options.Model.DecisionThreshold);
            // The same events, scored by the replay: every labelled event the live evaluation holds has a replayed prediction.
            var backtest = new double[ids.Length];
            var missing = 0;
            var maxDifference = 0.0;
            for (var i = 0; i < ids.Length; i++)
            {
                if (!replayed[model].TryGetValue(ids[i], out backtest[i])) { missing++; backtest[i] = double.NaN; continue; }
                maxDifference = Math.Max(maxDifference, Math.Abs(backtest[i] - scores[i]));
            }
            double? replayAuc = missing == 0 ? BinaryEvaluation.Auc(backtest, ys) : null;
            models.Add(new DemoModelEvaluation(model, arm, m.Count, m.Positives, Math.Round(m.Auc, 4), replayAuc is { } r ? Math.Round(r, 4) : null,
                replayAuc is { } d ? Math.Round(m.Auc - d, 4) : null, Math.Round(maxDifference, 6), Math.Round(m.Precision, 4), Math.Round(m.Recall, 4),
                Math.Round(m.LogLoss, 4), Math.Round(m.Brier, 4)));
            var backtestText = replayAuc is { } b
                ? FormattableString.Invariant($"{b:0.0000}, difference {m.Auc - b:+0.0000;-0.0000}, largest score difference {maxDifference:0.0E+0}")
                : $"n/a ({missing} events not replayed)";
            Status(s, FormattableString.Invariant($"live AUC {model} [{arm}]: {m.Auc:0.0000} on {m.Count:N0} labelled events ({m.Positives} positive); replay backtest of the same events: {backtestText}"));
        }
        return new DemoEvaluation(labels.Count, counts.Joined, counts.Early, counts.Late, counts.DuplicateLabels, [.. models]);
    }

    /// <summary>
    /// --challenger: a deployment file in a temporary directory serving the demo's model as champion and the
    /// challenger as a shadow (compared live) and as the fallback tier (over a quarter of a second of events at the base rate).
    /// </summary>
    private static string Deploy(ProcessorOptions options, string challengerText, DemoSettings s)
    {
        var challenger = ModelRef.Parse(challengerText, "--challenger");
        var repository = PathResolver.Resolve(options.Model.Repository);
        var championDir = ModelRepository.Resolve(repository, options.Model.Name, options.Model.Version);
        var champion = new ModelRef(options.Model.Name, Path.GetFileName(championDir));
        ModelRepository.Resolve(repository, challenger.Name, challenger.Version);   // exists, or one line saying what is missing
        var budget = (long)Math.Max(500, (s.Rate > 0 ? s.Rate : 5_000) / 4);   // a quarter of a second of events at the base rate
        var spec = new DeploymentSpec(1, champion, [new ShadowSpec(challenger, 1)], null,
            new FallbackSpec(challenger, budget, budget / 2, null, null, MinDwellMs: 3_000, OnError: true));
        if (spec.Champion == challenger) throw new DeploymentException($"--challenger {challenger} is the champion; name another model.");
        var dir = Path.Combine(Path.GetTempPath(), "streaminference-demo-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, DeploymentSpec.FileName);
        spec.Save(file);
        options.Model.Repository = repository;
        options.Model.Deployment = file;
        Status(s, $"deployment: champion {champion}, {challenger} as shadow (compared live) and as fallback tier over {budget:N0} events of lag");
        return dir;
    }

    private static DemoDeployment Summarize(ProcessorOptions options, string challenger, List<ComparisonReport> comparisons, List<TierSwitch> switches, StreamProcessor processor)
    {
        ComparisonReport? last;
        lock (comparisons) last = comparisons.LastOrDefault();
        string[] shown;
        lock (switches) shown = [.. switches.Select(x => $"{x.At:HH:mm:ss.fff} → {x.To}: {x.Reason}")];
        return new DemoDeployment($"{options.Model.Name}@{options.Model.Version}", challenger, comparisons.Count,
            last is null ? double.NaN : Math.Round(last.Agreement, 4), last is null ? double.NaN : Math.Round(last.RankCorrelation, 4),
            shown.Length, processor.DeploymentTelemetry?.FallbackRows ?? 0, shown);
    }

    private sealed class DirectoryCleanup(string? dir) : IDisposable
    {
        public void Dispose()
        {
            if (dir is not null && Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    private static readonly System.Collections.Concurrent.ConcurrentQueue<string> DeploymentLines = new();

    private static DemoDrift DriftVerdict(DriftMonitor? monitor, DemoSettings s)
    {
        var start = (s.StartTime ?? default).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
        if (monitor is null) return new DemoDrift("off", 0, 0, 0, [], s.StartTime is null ? "now" : start);
        var last = monitor.LastReport;
        return new DemoDrift(last is null ? "none" : last.MaxSeverity.ToString().ToUpperInvariant(),
            monitor.WindowsBySeverity[0], monitor.WindowsBySeverity[1], monitor.WindowsBySeverity[2],
            last?.Features.Append(last.Prediction).Where(f => f.Severity == DriftSeverity.Warn).Select(f => f.Name).ToArray() ?? [],
            s.StartTime is null ? "now" : start);
    }

    private static void Status(DemoSettings s, string message)
    {
        if (!s.Quiet) Console.Error.WriteLine(message);
    }

    private static void LiveLine(DemoSettings s, TimeSpan elapsed, int produced, PredictionAudit audit, StreamProcessor processor)
    {
        if (s.Quiet || processor.Metrics is not { } m) return;
        var seconds = Math.Max(elapsed.TotalSeconds, 1e-9);
        var line = $"[{elapsed:mm\\:ss}] produced {produced:N0} | predicted {audit.Predicted:N0} ({audit.Predicted / seconds:N0}/s) | dead letters {audit.DeadLettered:N0}" +
                   $" | batch avg {m.BatchedRecords / (double)Math.Max(1, m.Batches):N1}" +
                   $" | latency p50 {m.Latency.PercentileMicroseconds(0.5) / 1000.0:N1} ms p95 {m.Latency.PercentileMicroseconds(0.95) / 1000.0:N1} ms p99 {m.Latency.PercentileMicroseconds(0.99) / 1000.0:N1} ms";
        if (Console.IsErrorRedirected) Console.Error.WriteLine(line);
        else Console.Error.Write("\r" + line.PadRight(Math.Min(Console.WindowWidth > 0 ? Console.WindowWidth - 1 : 160, 200)));

        while (DeploymentLines.TryDequeue(out var deploymentLine))
        {
            if (!Console.IsErrorRedirected) Console.Error.WriteLine();
            Console.Error.WriteLine(deploymentLine);
        }

        // Each closed drift window, once: which features drift, and by how much; or plainly that none does.
        while (DriftWindows.TryDequeue(out var report))
        {
            var drifting = report.Features.Append(report.Prediction).Where(f => f.Severity != DriftSeverity.Ok)
                .OrderByDescending(f => f.Severity).ThenByDescending(f => double.IsFinite(f.Psi) ? f.Psi : 0).ToArray();
            var text = drifting.Length == 0
                ? $"OK, no drift: {report.Features.Count} features and the prediction within thresholds"
                : string.Join("; ", drifting.Select(Describe));
            if (!Console.IsErrorRedirected) Console.Error.WriteLine();
            var tally = ShownWindows;
            tally[(int)report.MaxSeverity]++;
            Console.Error.WriteLine($"drift window {report.Sequence} ({report.Events:N0} events): {text}   [windows so far: {tally[0]} OK, {tally[1]} WARN, {tally[2]} ALERT]");
        }
    }

    private static string Describe(FeatureDrift f)
    {
        var test = double.IsFinite(f.Ks)
            ? string.Create(CultureInfo.InvariantCulture, $"ks {f.Ks:0.00}")
            : string.Create(CultureInfo.InvariantCulture, $"chi2 p {f.ChiSquaredPValue:0.0E+0}");
        return string.Create(CultureInfo.InvariantCulture, $"{f.Severity.ToString().ToUpperInvariant()} {f.Name} psi {f.Psi:0.00} {test}");
    }

    private static readonly System.Collections.Concurrent.ConcurrentQueue<DriftReport> DriftWindows = new();
    private static readonly long[] ShownWindows = new long[3];
    private const string DriftTopic = "drift-reports";
    private const string LabelsTopic = "labels";
}
