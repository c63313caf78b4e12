using StreamInference.Core.Deployment;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using StackExchange.Redis;
using StreamInference.Batch.Features;
using StreamInference.Batch.History;
using StreamInference.Batch.Materialization;
using StreamInference.Batch.Profiling;
using StreamInference.Batch.Replay;
using StreamInference.Batch.Scoring;
using StreamInference.Batch.Synthetic;
using StreamInference.Batch.Training;
using StreamInference.Core.Drift;
using StreamInference.Core.Features;
using StreamInference.Core.Features.Windows;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Processing;
using AvroSchema = Avro.Schema;

namespace StreamInference.Cli;

/// <summary>The batch path: history → point-in-time features → training set, Redis, model, reference profile.</summary>
public static class BatchCommands
{
    private const string DefaultFeatures = "schemas/features/card_payments.yaml";
    private const string DefaultHistory = "data/history.parquet";
    private const string DefaultTrainingSet = "data/training.parquet";
    private const string DefaultModel = "models/fraud-gbm/1";

    private static Option<string> FeaturesOption() =>
        new("--features") { Description = "Feature-set definition (YAML).", DefaultValueFactory = _ => DefaultFeatures };

    private static FeaturePlan LoadPlan(ParseResult parse, Option<string> option) =>
        FeatureSetLoader.LoadFile(PathResolver.Resolve(parse.GetValue(option)!));

    /// <summary>Runs a command body; bad input and configuration become one clear line on stderr and exit code 2.</summary>
    private static async Task<int> Guard(Func<Task<int>> body)
    {
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (Exception e) when (e is FeatureDefinitionException or InvalidDataException or FileNotFoundException or ArgumentException or InvalidOperationException or DeploymentException)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
            return 2;
        }
    }

    public static Command History()
    {
        var features = FeaturesOption();
        var output = new Option<string>("--out") { Description = "Parquet file to write.", DefaultValueFactory = _ => DefaultHistory };
        var events = new Option<int>("--events") { Description = "Number of events.", DefaultValueFactory = _ => 300_000 };
        var days = new Option<int>("--days") { Description = "Length of the history in days.", DefaultValueFactory = _ => 90 };
        var end = new Option<DateTimeOffset>("--end") { Description = "Event time the history ends at (UTC).", DefaultValueFactory = _ => new HistoryOptions().End };
        var seed = new Option<int>("--seed") { Description = "Generator seed (the live producer uses 7 for the same cards and merchants only with the same seed).", DefaultValueFactory = _ => 42 };
        var driftAt = new Option<int?>("--drift-at") { Description = "Shift the synthetic world from event K on (higher amounts, more online payments)." };
        var command = new Command("history", "Write a synthetic card-payment history with fraud labels (Parquet, arrival order, some events out of order or late).")
        {
            features, output, events, days, end, seed, driftAt,
        };
        command.SetAction((parse, ct) => Guard(async () =>
        {
            var plan = LoadPlan(parse, features);
            if (parse.GetValue(events) < 1 || parse.GetValue(days) < 1) throw new ArgumentException("--events and --days must be at least 1.");
            EventHistory history;
            using (var progress = new ConsoleProgress("generate", parse.GetValue(events)))
            {
                history = SyntheticHistory.Generate(plan, new HistoryOptions
                {
                    Events = parse.GetValue(events), Seed = parse.GetValue(seed), End = parse.GetValue(end), Span = TimeSpan.FromDays(parse.GetValue(days)),
                    DriftAt = parse.GetValue(driftAt),
                }, progress);
            }
            var path = parse.GetValue(output)!;
            await ParquetHistory.WriteAsync(path, history, ct).ConfigureAwait(false);
            Console.Out.WriteLine(JsonSerializer.Serialize(new HistoryResult(path, history.Count, Iso(history.MinTimeMs), Iso(history.MaxTimeMs)), BatchJson.Default.HistoryResult));
            return 0;
        }));
        return command;
    }

    public static Command Backfill()
    {
        var features = FeaturesOption();
        var history = new Option<string?>("--history") { Description = $"Parquet history to read (columns named after the event fields; default {DefaultHistory} unless --topic is given)." };
        var topic = new Option<string?>("--topic") { Description = "Read this topic from its beginning instead of a Parquet file." };
        var bootstrap = new Option<string?>("--bootstrap-servers") { Description = "Kafka bootstrap servers for --topic (default: env KAFKA_BOOTSTRAP_SERVERS)." };
        var registry = new Option<string?>("--schema-registry-url") { Description = "Schema registry for --topic (default: env SCHEMA_REGISTRY_URL)." };
        var schema = new Option<string>("--schema") { Description = "Reader schema for --topic.", DefaultValueFactory = _ => "schemas/payment-event.avsc" };
        var labels = new Option<string?>("--labels") { Description = "For --topic: Parquet file with the event id column and the label column, joined by event id." };
        var output = new Option<string>("--out") { Description = "Training set to write (Parquet).", DefaultValueFactory = _ => DefaultTrainingSet };
        var includeWarmup = new Option<bool>("--include-warmup") { Description = "Also write the rows of the history's first stretch (its longest window), whose windows and lookups are still filling." };
        var command = new Command("backfill",
            "Compute point-in-time-correct feature vectors for a history (Parquet file or topic) with the streaming path's feature code, " +
            "and write them with labels as a Parquet training set.")
        {
            features, history, topic, bootstrap, registry, schema, labels, output, includeWarmup,
        };
        command.SetAction((parse, ct) => Guard(async () =>
        {
            var plan = LoadPlan(parse, features);
            var clock = Stopwatch.StartNew();
            var events = await LoadHistoryAsync(parse, plan, history, topic, bootstrap, registry, schema, labels, ct).ConfigureAwait(false);
            var order = events.EventTimeOrder();
            var timeline = LookupTimeline.Compute(events, events.MaxTimeMs + 1, order);
            FeatureRows rows;
            using (var progress = new ConsoleProgress("backfill", events.Count))
                rows = PointInTimeFeatures.Compute(events, timeline, progress, order);
            var path = parse.GetValue(output)!;
            var from = parse.GetValue(includeWarmup) ? long.MinValue : events.MinTimeMs + plan.WarmupMs;
            var written = await TrainingSet.WriteAsync(path, events, rows, from, ct).ConfigureAwait(false);
            if (written == 0) throw new InvalidDataException($"The history spans less than the feature set's warm-up ({Durations.Format(plan.WarmupMs)}); nothing to write (--include-warmup writes it anyway).");
            var defaulted = new Dictionary<string, double>();
            for (var f = 0; f < plan.FeatureCount; f++)
                defaulted[plan.Features[f].Name] = Math.Round(rows.DefaultedPerFeature[f] / (double)Math.Max(1, rows.Count), 4);
            Console.Out.WriteLine(JsonSerializer.Serialize(new BackfillResult(path, written, rows.Count - written, rows.LateEvents, rows.StaleLookups,
                timeline.SnapshotCount, Iso(events.MinTimeMs), Iso(events.MaxTimeMs), defaulted, Math.Round(clock.Elapsed.TotalSeconds, 2)), BatchJson.Default.BackfillResult));
            return 0;
        }));
        return command;
    }

    private static async Task<EventHistory> LoadHistoryAsync(ParseResult parse, FeaturePlan plan, Option<string?> history, Option<string?> topic,
        Option<string?> bootstrap, Option<string?> registry, Option<string> schema, Option<string?> labels, CancellationToken ct)
    {
        var topicName = parse.GetValue(topic);
        if (topicName is null)
        {
            var path = parse.GetValue(history) ?? DefaultHistory;
            using var progress = new ConsoleProgress("read", 0);
            return await ParquetHistory.ReadAsync(path, plan, progress, ct).ConfigureAwait(false);
        }
        if (parse.GetValue(history) is not null) throw new ArgumentException("Give either --history or --topic, not both.");
        var (servers, url) = KafkaEndpoints(parse, bootstrap, registry, "--topic");
        var labelMap = parse.GetValue(labels) is { } labelPath ? await ReadLabelsAsync(labelPath, plan, ct).ConfigureAwait(false) : null;
        using var client = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = url });
        var reader = AvroSchema.Parse(await File.ReadAllTextAsync(PathResolver.Resolve(parse.GetValue(schema)!), ct).ConfigureAwait(false));
        using var bar = new ConsoleProgress("read " + topicName, 0, "records");
        var result = await TopicHistory.ReadAsync(servers, topicName, client, reader, plan, labelMap,
            new Progress<(long Done, long Total)>(p => { bar.SetTotal(p.Total); bar.Report(p.Done); }), ct).ConfigureAwait(false);
        await Console.Error.WriteLineAsync($"read {result.Records:N0} records: {result.DeadLettered:N0} undecodable (skipped), {result.Labelled:N0} labelled").ConfigureAwait(false);
        return result.History;
    }

    /// <summary>Bootstrap servers and registry URL from the options, else KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL.</summary>
    private static (string Servers, string RegistryUrl) KafkaEndpoints(ParseResult parse, Option<string?> bootstrap, Option<string?> registry, string who) =>
        (parse.GetValue(bootstrap) ?? Environment.GetEnvironmentVariable("KAFKA_BOOTSTRAP_SERVERS")
            ?? throw new ArgumentException($"{who} needs --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS."),
         parse.GetValue(registry) ?? Environment.GetEnvironmentVariable("SCHEMA_REGISTRY_URL")
            ?? throw new ArgumentException($"{who} needs --schema-registry-url or SCHEMA_REGISTRY_URL."));

    private static async Task<Dictionary<string, double>> ReadLabelsAsync(string path, FeaturePlan plan, CancellationToken ct)
    {
        if (plan.LabelField is null) throw new ArgumentException($"--labels given, but feature set '{plan.Name}' declares no label.");
        await using var stream = File.OpenRead(path);
        await using var reader = await Parquet.ParquetReader.CreateAsync(stream, cancellationToken: ct).ConfigureAwait(false);
        var fields = reader.Schema.GetDataFields();
        var id = fields.FirstOrDefault(f => f.Name == plan.IdField) ?? throw new InvalidDataException($"{path}: no '{plan.IdField}' column.");
        var label = fields.FirstOrDefault(f => f.Name == plan.LabelField) ?? throw new InvalidDataException($"{path}: no '{plan.LabelField}' column.");
        var map = new Dictionary<string, double>(StringComparer.Ordinal);
        for (var g = 0; g < reader.RowGroupCount; g++)
        {
            using var rg = reader.OpenRowGroupReader(g);
            var n = (int)rg.RowCount;
            var ids = await ParquetHistory.ReadTextAsync(rg, id, n, ct).ConfigureAwait(false);
            var values = await ParquetHistory.ReadNumericAsync(rg, label, n, ct).ConfigureAwait(false);
            for (var i = 0; i < n; i++) if (ids[i] is { } key) map[key] = values[i];
        }
        return map;
    }

    public static Command Materialize()
    {
        var features = FeaturesOption();
        var history = new Option<string>("--history") { Description = "Parquet history.", DefaultValueFactory = _ => DefaultHistory };
        var redis = new Option<string?>("--redis") { Description = "Redis to write to (redis://host:port or host:port; default: env REDIS_URL)." };
        var asOf = new Option<DateTimeOffset?>("--as-of") { Description = "Materialize what was known at this time: lookup snapshots and window state from earlier events only (default: the end of the history)." };
        var noWindows = new Option<bool>("--no-windows") { Description = "Write only lookups, not the window state (by default the windows start warm)." };
        var command = new Command("materialize",
            "Compute the lookup values (and window state) from a history with the batch path and write the newest into Redis, " +
            "in the keys the processor reads. Idempotent.")
        {
            features, history, redis, asOf, noWindows,
        };
        command.SetAction((parse, ct) => Guard(async () =>
        {
            var plan = LoadPlan(parse, features);
            var url = parse.GetValue(redis) ?? Environment.GetEnvironmentVariable("REDIS_URL")
                      ?? throw new ArgumentException("materialize needs --redis or REDIS_URL.");
            EventHistory events;
            using (var progress = new ConsoleProgress("read", 0))
                events = await ParquetHistory.ReadAsync(parse.GetValue(history)!, plan, progress, ct).ConfigureAwait(false);
            var until = parse.GetValue(asOf)?.ToUnixTimeMilliseconds() ?? events.MaxTimeMs + 1;
            var order = events.EventTimeOrder();
            var timeline = LookupTimeline.Compute(events, until, order);
            Dictionary<string, EntityWindowState>? states = null;
            if (!parse.GetValue(noWindows))
            {
                states = new Dictionary<string, EntityWindowState>(StringComparer.Ordinal);
                var known = until > events.MaxTimeMs ? events : events.Until(until - 1);
                using var progress = new ConsoleProgress("windows", known.Count);
                PointInTimeFeatures.Compute(known, timeline, progress, known == events ? order : null, states);
            }
            using var mux = await ConnectionMultiplexer.ConnectAsync(RedisUrl.ToConfiguration(url)).ConfigureAwait(false);
            MaterializeReport report;
            using (var progress = new ConsoleProgress("write", 0, "keys"))
                report = await RedisMaterializer.WriteAsync(mux.GetDatabase(), plan, timeline, until, states, progress, ct).ConfigureAwait(false);
            Console.Out.WriteLine(JsonSerializer.Serialize(new MaterializeResult(report.LookupHashes, report.WindowEntities, Iso(report.AsOfMs)), BatchJson.Default.MaterializeResult));
            return 0;
        }));
        return command;
    }

    public static Command Train()
    {
        var features = FeaturesOption();
        var set = new Option<string>("--training-set") { Description = "Training set written by backfill.", DefaultValueFactory = _ => DefaultTrainingSet };
        var output = new Option<string?>("--out")
        {
            Description = "Model version directory (<repository>/<name>/<version>) for model.onnx and manifest.json " +
                          "[default: models/fraud-gbm/<next version> for lightgbm, models/fraud-logreg/<next version> for logreg].",
        };
        var replace = new Option<bool>("--replace") { Description = "Overwrite the --out version if it exists (versions are otherwise never overwritten)." };
        var trainer = new Option<string>("--trainer")
        {
            Description = "lightgbm: gradient-boosted trees (ML.NET LightGBM), the example fraud model. logreg: logistic regression (ML.NET L-BFGS), the cheap alternative.",
            DefaultValueFactory = _ => "lightgbm",
        };
        trainer.AcceptOnlyFromAmong("lightgbm", "logreg");
        var defaults = new TrainerSettings();
        var trees = new Option<int>("--trees") { Description = "lightgbm: boosting rounds.", DefaultValueFactory = _ => defaults.Trees };
        var leaves = new Option<int>("--leaves") { Description = "lightgbm: leaves per tree at most.", DefaultValueFactory = _ => defaults.Leaves };
        var learningRate = new Option<double>("--learning-rate") { Description = "lightgbm: shrinkage per round.", DefaultValueFactory = _ => defaults.LearningRate };
        var minLeafRows = new Option<int>("--min-leaf-rows") { Description = "lightgbm: training rows per leaf at least.", DefaultValueFactory = _ => defaults.MinLeafRows };
        var seed = new Option<int>("--seed") { Description = "Seed of the trainer (and of the wide-mlp hidden weights).", DefaultValueFactory = _ => defaults.Seed };
        var testFraction = new Option<double>("--test-fraction") { Description = "Share of the labelled rows, latest by event time, held out for evaluation.", DefaultValueFactory = _ => 0.2 };
        var architecture = new Option<string>("--architecture")
        {
            Description = "plain: the trainer's own model. wide-mlp (trains the logistic regression): the logistic regression plus a residual ReLU MLP of --layers x --hidden units " +
                          "(seeded random hidden weights; tens of millions of parameters at the defaults), the GPU-sized example; its AUC is measured on the ONNX graph.",
            DefaultValueFactory = _ => "plain",
        };
        architecture.AcceptOnlyFromAmong("plain", "wide-mlp");
        var hidden = new Option<int>("--hidden") { Description = "wide-mlp: units per hidden layer.", DefaultValueFactory = _ => 4096 };
        var layers = new Option<int>("--layers") { Description = "wide-mlp: hidden layers.", DefaultValueFactory = _ => 3 };
        var evalRows = new Option<int>("--eval-rows") { Description = "wide-mlp: rows (evenly spaced) scored with ONNX Runtime for each AUC.", DefaultValueFactory = _ => 5_000 };
        var distillFrom = new Option<string?>("--distill-from")
        {
            Description = "Distillation: a model version directory (the teacher, e.g. the costly champion) whose scores the new model is fitted to instead of the labels " +
                          "(soft targets, every row of the training period). A small student by default: lightgbm with 30 trees of at most 8 leaves, learning rate 0.2, unless " +
                          "--trees/--leaves/--learning-rate say otherwise, or --trainer logreg. Teacher and student AUCs on the same held-out rows go into the manifest " +
                          "[default --out: <teacher's repository>/<teacher>-student/<next version>].",
        };
        var command = new Command("train", "Train a fraud model with ML.NET on a time-based split (train on the earlier period, evaluate on the later one), export it to ONNX " +
                                           "and import it like any other model, with its held-out AUC (measured with ONNX Runtime on the imported graph) in the manifest.")
        {
            features, set, output, replace, trainer, trees, leaves, learningRate, minLeafRows, seed, testFraction, architecture, hidden, layers, evalRows, distillFrom,
        };
        command.SetAction((parse, ct) => Guard(async () =>
        {
            var plan = LoadPlan(parse, features);
            var shape = parse.GetValue(architecture) == "wide-mlp" ? new WideMlpShape(parse.GetValue(hidden), parse.GetValue(layers), parse.GetValue(seed)) : null;
            // wide-mlp builds on the logistic regression: it is the trainer unless another is asked for by name.
            var kind = parse.GetValue(trainer) == "logreg" || (shape is not null && parse.GetResult(trainer) is null or { Implicit: true })
                ? TrainerKind.LogisticRegression : TrainerKind.LightGbm;
            var teacher = parse.GetValue(distillFrom);
            // A student is small unless its size is asked for.
            static bool Given(ParseResult parse, Option<int> option) => parse.GetResult(option) is { Implicit: false };
            var settings = new TrainerSettings(kind, teacher is not null && !Given(parse, trees) ? StudentTrees : parse.GetValue(trees),
                teacher is not null && !Given(parse, leaves) ? StudentLeaves : parse.GetValue(leaves),
                teacher is not null && parse.GetResult(learningRate) is null or { Implicit: true } ? StudentLearningRate : parse.GetValue(learningRate),
                parse.GetValue(minLeafRows), parse.GetValue(seed));
            settings.Validate();
            shape?.Validate();
            var target = teacher is not null && parse.GetValue(output) is null ? StudentTarget(teacher, parse.GetValue(replace)) : TrainTarget(parse.GetValue(output), kind, parse.GetValue(replace));
            var data = await TrainingSet.ReadAsync(parse.GetValue(set)!, ct).ConfigureAwait(false);
            var report = Trainer.Train(data, plan, target, settings, parse.GetValue(testFraction), shape, parse.GetValue(evalRows),
                new Progress<string>(line => Console.Error.WriteLine($"train: {line}")), teacher);
            Console.Out.WriteLine(JsonSerializer.Serialize(new TrainResult(Path.GetRelativePath(Directory.GetCurrentDirectory(), report.ModelDirectory), target.Name, target.Version, report.TrainRows, report.TestRows,
                Math.Round(report.TrainAuc, 4), Math.Round(report.TestAuc, 4), Math.Round(report.FraudRate, 4), report.SplitAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)), BatchJson.Default.TrainResult));
            return 0;
        }));
        return command;
    }

    private const int StudentTrees = 30;
    private const int StudentLeaves = 8;
    // 30 rounds at 0.05 stop short of the fit (AUC 0.9848 against 0.9923 at 0.2, distilled from fraud-gbm@1).
    private const double StudentLearningRate = 0.2;

    /// <summary>A student's default place: beside its teacher, named after it.</summary>
    private static TrainingTarget StudentTarget(string teacher, bool replace)
    {
        var dir = Path.GetFullPath(Path.TrimEndingDirectorySeparator(teacher));
        var manifest = Path.Combine(dir, "manifest.json");
        if (!File.Exists(manifest)) throw new FileNotFoundException($"--distill-from '{teacher}' is not a model version directory (model.onnx and manifest.json).");
        var name = $"{ModelManifest.Load(manifest).Name}-student";
        var repository = Path.GetDirectoryName(Path.GetDirectoryName(dir)!)!;
        return new TrainingTarget(repository, name, ModelImporter.NextVersion(Path.Combine(repository, name)), replace);
    }

    private static TrainingTarget TrainTarget(string? output, TrainerKind kind, bool replace)
    {
        if (output is null)
        {
            var name = kind == TrainerKind.LogisticRegression ? Trainer.LogisticRegressionName : Trainer.LightGbmName;
            return new TrainingTarget("models", name, ModelImporter.NextVersion(Path.Combine("models", name)), replace);
        }
        var dir = Path.GetFullPath(Path.TrimEndingDirectorySeparator(output));
        var version = Path.GetFileName(dir);
        var nameDir = Path.GetDirectoryName(dir);
        if (string.IsNullOrEmpty(version) || nameDir is null || Path.GetDirectoryName(nameDir) is not { } repository)
            throw new ArgumentException($"--out '{output}' must be a version directory, <repository>/<name>/<version>.");
        return new TrainingTarget(repository, Path.GetFileName(nameDir), version, replace);
    }

    public static Command Profile()
    {
        var features = FeaturesOption();
        var set = new Option<string>("--training-set") { Description = "Training set written by backfill.", DefaultValueFactory = _ => DefaultTrainingSet };
        var model = new Option<string>("--model") { Description = "Model version directory; the profile is written there as " + ReferenceProfile.FileName + ".", DefaultValueFactory = _ => DefaultModel };
        var command = new Command("profile",
            "Build the reference profile of the training distributions (per-feature quantile bins and shares, categorical frequencies, missing rates, " +
            "and the model's score distribution scored with ONNX Runtime) and save it beside the model.")
        {
            features, set, model,
        };
        command.SetAction((parse, ct) => Guard(async () =>
        {
            var plan = LoadPlan(parse, features);
            var data = await TrainingSet.ReadAsync(parse.GetValue(set)!, ct).ConfigureAwait(false);
            var dir = parse.GetValue(model)!;
            ReferenceProfile profile;
            using (var progress = new ConsoleProgress("score", data.Count))
                (profile, _) = ProfileBuilder.BuildAndSave(dir, data, plan, progress);
            var path = Path.Combine(dir, ReferenceProfile.FileName);
            Console.Out.WriteLine(JsonSerializer.Serialize(new ProfileResult(path, profile.Rows, profile.Features.Count,
                Math.Round(profile.Prediction.Mean, 5), profile.Prediction.Deciles.Select(d => Math.Round(d, 5)).ToArray()), BatchJson.Default.ProfileResult));
            return 0;
        }));
        return command;
    }

    public static Command Drift()
    {
        var features = FeaturesOption();
        var model = new Option<string>("--model") { Description = "Model version directory holding model.onnx, manifest.json and " + ReferenceProfile.FileName + ".", DefaultValueFactory = _ => DefaultModel };
        var set = new Option<string?>("--training-set") { Description = "Compare a training set (features already computed)." };
        var history = new Option<string?>("--history") { Description = "Compare a Parquet history (features computed here, point in time)." };
        var topic = new Option<string?>("--topic") { Description = "Compare a topic read from its beginning (features computed here)." };
        var bootstrap = new Option<string?>("--bootstrap-servers") { Description = "For --topic (default: env KAFKA_BOOTSTRAP_SERVERS)." };
        var registry = new Option<string?>("--schema-registry-url") { Description = "For --topic (default: env SCHEMA_REGISTRY_URL)." };
        var schema = new Option<string>("--schema") { Description = "Reader schema for --topic.", DefaultValueFactory = _ => "schemas/payment-event.avsc" };
        var alpha = new Option<double>("--alpha") { Description = "Significance level of the KS / chi-squared tests.", DefaultValueFactory = _ => 0.01 };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON instead of a table." };
        var failOnAlert = new Option<bool>("--fail-on-alert") { Description = "Exit with code 3 when any feature or the score is at ALERT (for pipelines)." };
        var includeWarmup = new Option<bool>("--include-warmup") { Description = "With --history/--topic: also compare the first stretch (the longest window), which training sets leave out." };
        var windowEvents = new Option<int>("--window-events")
        {
            Description = "Replay the sample in event-time order through the monitor in windows of this many events, as the processor judges " +
                          "live traffic (each window against the reference conditioned on its hours of the day); prints one line per window and the " +
                          "counts of OK / WARN / ALERT windows. 0: the whole sample as one window.",
            DefaultValueFactory = _ => 0,
        };
        var command = new Command("drift",
            "Compare a sample (training set, Parquet history or topic) with a model's reference profile: PSI, KS (binned, p-value), " +
            "Jensen-Shannon distance, chi-squared for categoricals and missing rates, per feature and for the score.")
        {
            features, model, set, history, topic, bootstrap, registry, schema, alpha, json, failOnAlert, includeWarmup, windowEvents,
        };
        command.SetAction((parse, ct) => Guard(async () =>
        {
            var plan = LoadPlan(parse, features);
            if (parse.GetValue(windowEvents) < 0) throw new ArgumentException("--window-events must be 0 (one window) or more.");
            var dir = parse.GetValue(model)!;
            var profilePath = Path.Combine(dir, ReferenceProfile.FileName);
            if (!File.Exists(profilePath)) throw new FileNotFoundException($"No reference profile at '{profilePath}' (run 'streaminference profile').", profilePath);
            var profile = ReferenceProfile.Load(profilePath);
            using var scorer = new OnnxScorer(dir, plan);

            float[] values;
            long[] masks;
            long[] times;
            if (parse.GetValue(set) is { } setPath)
            {
                if (parse.GetValue(history) is not null || parse.GetValue(topic) is not null) throw new ArgumentException("Give one of --training-set, --history or --topic.");
                var data = await TrainingSet.ReadAsync(setPath, ct).ConfigureAwait(false);
                if (data.FeatureSet != plan.Name || data.FeatureSetVersion != plan.Version)
                    throw new InvalidDataException($"{setPath} was built with feature set '{data.FeatureSet}' v{data.FeatureSetVersion}, not '{plan.Name}' v{plan.Version}.");
                (values, masks, times) = (data.Features, data.DefaultedMask, data.TimesMs);
            }
            else
            {
                var events = await LoadHistoryAsync(parse, plan, history, topic, bootstrap, registry, schema, new Option<string?>("--labels"), ct).ConfigureAwait(false);
                var order = events.EventTimeOrder();
                FeatureRows rows;
                using (var progress = new ConsoleProgress("features", events.Count))
                    rows = PointInTimeFeatures.Compute(events, LookupTimeline.Compute(events, events.MaxTimeMs + 1, order), progress, order);
                // The same rows backfill would put in a training set: not the warm-up stretch.
                var from = parse.GetValue(includeWarmup) ? long.MinValue : events.MinTimeMs + plan.WarmupMs;
                var keep = Enumerable.Range(0, events.Count).Where(i => events.TimeMs(i) >= from).ToArray();
                values = new float[keep.Length * plan.FeatureCount];
                for (var k = 0; k < keep.Length; k++) rows.Row(keep[k]).CopyTo(values.AsSpan(k * plan.FeatureCount));
                masks = keep.Select(i => rows.DefaultedMask[i]).ToArray();
                times = keep.Select(events.TimeMs).ToArray();
            }
            var count = masks.Length;
            if (count == 0) throw new InvalidDataException("The sample is empty.");

            var window = parse.GetValue(windowEvents);
            var monitor = new DriftMonitor(profile, plan, new DriftSettings { Alpha = parse.GetValue(alpha), WindowEvents = window > 0 ? window : int.MaxValue, MinWindowEvents = 1 });
            double[] scores;
            using (var progress = new ConsoleProgress("score", count))
                scores = RowScoring.PrimaryScores(scorer, plan, values, count, progress);
            if (window > 0)
            {
                var reports = new List<DriftReport>();
                monitor.WindowClosed += reports.Add;
                foreach (var i in Enumerable.Range(0, count).OrderBy(i => times[i]))
                    monitor.Observe(values.AsSpan(i * plan.FeatureCount, plan.FeatureCount), masks[i], scores[i], times[i]);
                PrintWindows(reports, window);
                return parse.GetValue(failOnAlert) && reports.Any(r => r.MaxSeverity == DriftSeverity.Alert) ? 3 : 0;
            }
            for (var i = 0; i < count; i++) monitor.Observe(values.AsSpan(i * plan.FeatureCount, plan.FeatureCount), masks[i], scores[i], times[i]);
            var report = monitor.Close();
            if (parse.GetValue(json)) Console.Out.WriteLine(JsonSerializer.Serialize(report, BatchJson.Default.DriftReport));
            else PrintTable(report);
            return parse.GetValue(failOnAlert) && report.MaxSeverity == DriftSeverity.Alert ? 3 : 0;
        }));
        return command;
    }

    public static Command Replay()
    {
        var features = FeaturesOption();
        var topic = new Option<string>("--topic") { Description = "Topic to replay.", DefaultValueFactory = _ => "payments" };
        var from = new Option<string>("--from") { Description = "Start: beginning, now, an ISO-8601 time (record timestamps) or partition:offset pairs.", DefaultValueFactory = _ => "beginning" };
        var to = new Option<string>("--to") { Description = "End (exclusive), same forms as --from.", DefaultValueFactory = _ => "now" };
        var model = new Option<string>("--model") { Description = "Pinned model name@version (or name@latest).", DefaultValueFactory = _ => "fraud-gbm@latest" };
        var repository = new Option<string>("--repository") { Description = "Model repository directory.", DefaultValueFactory = _ => "models" };
        var outTopic = new Option<string?>("--out-topic") { Description = "Write prediction records (keyed eventId@modelVersion) to this topic." };
        var outParquet = new Option<string?>("--out-parquet") { Description = "Write predictions to this Parquet file instead." };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Checkpoint file: an interrupted replay run again with the same arguments resumes from it." };
        var rate = new Option<double>("--rate") { Description = "At most this many events per second written (0 = unlimited), to leave the live processor room.", DefaultValueFactory = _ => 0 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime threads (0 = ONNX Runtime decides); lower it next to a live processor.", DefaultValueFactory = _ => 0 };
        var bootstrap = new Option<string?>("--bootstrap-servers") { Description = "Kafka bootstrap servers (default: env KAFKA_BOOTSTRAP_SERVERS)." };
        var registry = new Option<string?>("--schema-registry-url") { Description = "Schema registry (default: env SCHEMA_REGISTRY_URL)." };
        var schema = new Option<string>("--schema") { Description = "Reader schema of the topic.", DefaultValueFactory = _ => "schemas/payment-event.avsc" };
        var labels = new Option<string?>("--labels")
        {
            Description = "Parquet file with event ids and labels (for label-based lookups, and a backtest: the replayed predictions' AUC, precision, " +
                          "recall, log loss, Brier and calibration per model, and with --compare DeLong's test and the promotion gate).",
        };
        var labelsTopic = new Option<string?>("--labels-topic") { Description = "Like --labels, from a labels topic (schemas/label.avsc), read whole." };
        var compare = new Option<string?>("--compare")
        {
            Description = "A challenger name@version scored on the same feature vectors and compared with --model (agreement at 0.5, score differences, rank correlation, cost per row); its scores are not written.",
        };
        var compareWindow = new Option<int>("--compare-window") { Description = "Events per comparison window.", DefaultValueFactory = _ => 2_000 };
        var deployment = new Option<string?>("--deployment")
        {
            Description = "Replay a deployment file (instead of --model): its champion, and its canary on the same sticky share of entities as live " +
                          "(same salt and hash); predictions record arm and deployment version. Shadows and the fallback tier are live-only.",
        };
        var command = new Command("replay",
            "Score a range of a topic with a pinned model, features computed as of each event's time by the batch path (not today's Redis). " +
            "Reads with its own consumer (the live group is not touched); output records are keyed and valued deterministically, so reruns and resumed runs agree.")
        {
            features, topic, from, to, model, repository, outTopic, outParquet, checkpoint, rate, threads, bootstrap, registry, schema, labels, compare, compareWindow,
            deployment, labelsTopic,
        };
        command.SetAction((parse, ct) => Guard(async () =>
        {
            var plan = LoadPlan(parse, features);
            var (servers, url) = KafkaEndpoints(parse, bootstrap, registry, "replay");
            var repositoryPath = PathResolver.Resolve(parse.GetValue(repository)!);
            DeploymentSpec? spec = null;
            if (parse.GetValue(deployment) is { } deploymentFile)
            {
                if (parse.GetResult(model) is { Implicit: false }) throw new ArgumentException("Give --model or --deployment, not both: a deployment names its champion.");
                spec = DeploymentSpec.LoadFile(Path.IsPathRooted(deploymentFile) || File.Exists(deploymentFile) ? deploymentFile : Path.Combine(repositoryPath, deploymentFile));
            }
            var pinned = spec?.Champion.ToString() ?? parse.GetValue(model)!;
            var at = pinned.IndexOf('@');
            if (at <= 0 || at == pinned.Length - 1) throw new ArgumentException($"--model '{pinned}' must be name@version.");
            var dir = ModelRepository.Resolve(repositoryPath, pinned[..at], pinned[(at + 1)..]);
            var canary = spec?.Canary is { } c
                ? new ReplayCanary(ModelRepository.Resolve(repositoryPath, c.Model.Name, c.Model.Version), c.Share, c.Salt)
                : null;
            string? compareDir = null;
            if (parse.GetValue(compare) is { } challenger)
            {
                var cat = challenger.IndexOf('@');
                if (cat <= 0 || cat == challenger.Length - 1) throw new ArgumentException($"--compare '{challenger}' must be name@version.");
                compareDir = ModelRepository.Resolve(PathResolver.Resolve(parse.GetValue(repository)!), challenger[..cat], challenger[(cat + 1)..]);
            }
            if (parse.GetValue(compareWindow) < 10) throw new ArgumentException("--compare-window must be at least 10 events.");
            if (parse.GetValue(rate) < 0 || parse.GetValue(threads) < 0) throw new ArgumentException("--rate and --threads must not be negative.");
            if (parse.GetValue(labels) is not null && parse.GetValue(labelsTopic) is not null) throw new ArgumentException("Give --labels or --labels-topic, not both.");
            using var client = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = url });
            var labelMap = parse.GetValue(labels) is { } labelPath ? await ReadLabelsAsync(labelPath, plan, ct).ConfigureAwait(false)
                : parse.GetValue(labelsTopic) is { } fromTopic ? await LabelTopic.ReadAllAsync(servers, client, fromTopic, ct).ConfigureAwait(false)
                : null;
            var reader = AvroSchema.Parse(await File.ReadAllTextAsync(PathResolver.Resolve(parse.GetValue(schema)!), ct).ConfigureAwait(false));
            // One bar per partition (partitions are written one after the other), each with its rate and ETA.
            ConsoleProgress? bar = null;
            var barPartition = -1;
            var progress = new SyncProgress<ReplayProgress>(p =>
            {
                if (p.Partition != barPartition)
                {
                    bar?.Dispose();
                    bar = new ConsoleProgress($"partition {p.Partition}", p.Total);
                    barPartition = p.Partition;
                }
                bar!.Report(p.Done);
            });
            ReplaySummary summary;
            try
            {
                summary = await ReplayRunner.RunAsync(new ReplayRequest
                {
                    BootstrapServers = servers, Topic = parse.GetValue(topic)!, From = parse.GetValue(from)!, To = parse.GetValue(to)!,
                    ModelDirectory = dir, OutputTopic = parse.GetValue(outTopic), OutputParquet = parse.GetValue(outParquet),
                    CheckpointPath = parse.GetValue(checkpoint), Rate = parse.GetValue(rate), Threads = parse.GetValue(threads), Labels = labelMap,
                    CompareModelDirectory = compareDir, CompareWindowEvents = parse.GetValue(compareWindow),
                    Canary = canary, DeploymentVersion = spec?.Version,
                }, plan, reader, client, progress, ct: ct).ConfigureAwait(false);
            }
            finally
            {
                bar?.Dispose();
            }
            foreach (var p in summary.Partitions)
                await Console.Error.WriteLineAsync($"partition {p.Partition}: offsets {p.Start}..{p.End} ({p.Events:N0} events, resumed at {p.Resumed}), {p.Predictions:N0} predictions written").ConfigureAwait(false);
            Console.Out.WriteLine(JsonSerializer.Serialize(summary, BatchJson.Default.ReplaySummary));
            return 0;
        }));
        return command;
    }

    /// <summary>Reports synchronously on the caller's thread (Progress&lt;T&gt; would post out of order).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    /// <summary>One line per replayed window (its event-time span and what was not OK), then the window counts per severity.</summary>
    private static void PrintWindows(List<DriftReport> reports, int window)
    {
        var o = Console.Out;
        foreach (var r in reports)
        {
            var flagged = r.Features.Append(r.Prediction).Where(f => f.Severity > DriftSeverity.Ok)
                .Select(f => $"{f.Name} {f.Severity.ToString().ToUpperInvariant()} (psi {f.Psi.ToString("0.000", CultureInfo.InvariantCulture)})");
            o.WriteLine($"window {r.Sequence,4}  {r.Events,7:N0} events  {r.MaxSeverity.ToString().ToUpperInvariant(),-5}  {string.Join("; ", flagged)}");
        }
        var alert = reports.Count(r => r.MaxSeverity == DriftSeverity.Alert);
        var warn = reports.Count(r => r.MaxSeverity == DriftSeverity.Warn);
        o.WriteLine($"{reports.Count} windows of {window:N0} events in event-time order: {reports.Count - alert - warn} OK, {warn} WARN, {alert} ALERT");
    }

    private static void PrintTable(DriftReport report)
    {
        static string N(double v, string format) => double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "-";
        var o = Console.Out;
        o.WriteLine($"{report.Model}@{report.ModelVersion} vs {report.Events:N0} events (feature set {report.FeatureSet} v{report.FeatureSetVersion})");
        o.WriteLine($"{"feature",-28} {"kind",-11} {"missing",8} {"ref",7} {"psi",8} {"ks",7} {"ks p",9} {"js",7} {"chi2",10} {"chi2 p",9}  severity");
        foreach (var f in report.Features.Append(report.Prediction))
        {
            o.WriteLine($"{f.Name,-28} {f.Kind,-11} {N(f.MissingRate, "0.0%"),8} {N(f.ReferenceMissingRate, "0.0%"),7} {N(f.Psi, "0.0000"),8} {N(f.Ks, "0.000"),7} " +
                        $"{N(f.KsPValue, "0.0E+0"),9} {N(f.JsDistance, "0.000"),7} {N(f.ChiSquared, "0.0"),10} {N(f.ChiSquaredPValue, "0.0E+0"),9}  " +
                        $"{f.Severity.ToString().ToUpperInvariant()}{(f.Breaches.Count > 0 ? " (" + string.Join(", ", f.Breaches) + ")" : "")}");
        }
    }

    private static string Iso(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
}

public sealed record HistoryResult(string Path, int Events, string From, string To);
public sealed record BackfillResult(string Path, int Rows, int WarmupRowsSkipped, long LateEvents, long StaleLookups, int LookupSnapshots, string From, string To,
    Dictionary<string, double> DefaultedRate, double ElapsedSeconds);
public sealed record MaterializeResult(long LookupHashes, long WindowEntities, string AsOf);
public sealed record TrainResult(string ModelDirectory, string Name, string Version, int TrainRows, int TestRows, double TrainAuc, double TestAuc, double FraudRate, string SplitAt);
public sealed record ProfileResult(string Path, long Rows, int Features, double MeanScore, double[] ScoreDeciles);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(HistoryResult))]
[JsonSerializable(typeof(BackfillResult))]
[JsonSerializable(typeof(MaterializeResult))]
[JsonSerializable(typeof(TrainResult))]
[JsonSerializable(typeof(ProfileResult))]
[JsonSerializable(typeof(DriftReport))]
[JsonSerializable(typeof(ReplaySummary))]
public sealed partial class BatchJson : JsonSerializerContext;
