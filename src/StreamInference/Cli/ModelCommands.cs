using StreamInference.Core.Deployment;
using StackExchange.Redis;
using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Evaluation;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using StreamInference.Batch.Onnx;
using StreamInference.Batch.Profiling;
using StreamInference.Batch.Training;
using StreamInference.Core.Drift;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

/// <summary>
/// <c>model inspect | validate | list</c>: what an ONNX file looks like to the scorer, whether a repository's
/// versions would load, and what a repository holds.
/// </summary>
public static class ModelCommands
{
    private const string DefaultRepository = "models";
    private const string DefaultFeatures = "schemas/features/card_payments.yaml";

    public static Command Create()
    {
        var command = new Command("model", "Bring your own model: inspect an ONNX file, validate a model repository (or one version), list what it holds.");
        command.Subcommands.Add(Inspect());
        command.Subcommands.Add(Import());
        command.Subcommands.Add(Quantize());
        command.Subcommands.Add(Validate());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Promote());
        command.Subcommands.Add(Rollback());
        return command;
    }

    private static Option<string> DeploymentOption() => new("--deployment")
    {
        Description = "The deployment file the processors serve (Model:Deployment; relative to --repository, or absolute).",
        DefaultValueFactory = _ => DeploymentSpec.FileName,
    };

    private static Command Promote()
    {
        var model = new Argument<string>("model") { Description = "The model to serve as champion, name@version (e.g. the canary or a shadow)." };
        var deployment = DeploymentOption();
        var repository = new Option<string>("--repository") { Description = "Model repository.", DefaultValueFactory = _ => DefaultRepository };
        var features = new Option<string>("--features") { Description = "Feature-set definition the processors serve.", DefaultValueFactory = _ => DefaultFeatures };
        var ifBetter = new Option<bool>("--if-better")
        {
            Description = "Promote only when the model is significantly better than the champion on the same labelled events, as 'streaminference evaluate' " +
                          "holds them in Redis (a shadow's events): DeLong's test of the AUC difference; the lower end of its two-sided (1 - alpha) interval " +
                          "must exceed --min-gain, with at least 100 labelled events of each class. Refused: exit code 3, nothing written.",
        };
        var redis = new Option<string?>("--redis") { Description = "With --if-better: the evaluation's Redis, configuration or redis:// URL (default: env REDIS_URL, else localhost:6379)." };
        var evaluationGroup = new Option<string>("--evaluation-group")
        {
            Description = "With --if-better: the consumer group of the 'streaminference evaluate' whose labelled events decide (Evaluation:GroupId).",
            DefaultValueFactory = _ => new EvaluationOptions().EffectiveGroupId(new KafkaOptions()),
        };
        var alpha = new Option<double>("--alpha") { Description = "With --if-better: significance of the gate.", DefaultValueFactory = _ => 0.05 };
        var minGain = new Option<double>("--min-gain") { Description = "With --if-better: the AUC gain the interval's lower end must exceed.", DefaultValueFactory = _ => 0 };
        var command = new Command("promote",
            "Make a model the champion of a deployment, without a restart: the file gets the next version (the replaced champion recorded for " +
            "'model rollback'), every processor serving it loads the new version and swaps it in between two batches within Model:WatchIntervalMs " +
            "plus the load time. The model is loaded and checked against the feature set first; nothing is written when it would not serve.")
        {
            model, deployment, repository, features, ifBetter, redis, evaluationGroup, alpha, minGain,
        };
        command.SetAction(parse => Guard(() =>
        {
            var candidate = ModelRef.Parse(parse.GetValue(model)!, "model");
            if (parse.GetValue(ifBetter))
            {
                var a = parse.GetValue(alpha);
                if (a is <= 0 or >= 0.5) throw new ArgumentException($"--alpha must be in (0, 0.5) (was {a}).");
                var file = parse.GetValue(deployment)!;
                var current = DeploymentSpec.LoadFile(Path.IsPathRooted(file) ? file : Path.Combine(parse.GetValue(repository)!, file));
                var configuration = parse.GetValue(redis) is { } url ? RedisUrl.ToConfiguration(url)
                    : Environment.GetEnvironmentVariable("REDIS_URL") is { Length: > 0 } env ? RedisUrl.ToConfiguration(env) : "localhost:6379";
                var decision = GateAsync(configuration, EvaluationNamespace.Of(parse.GetValue(evaluationGroup)!), current.Champion.ToString(), candidate.ToString(), a,
                    parse.GetValue(minGain)).GetAwaiter().GetResult();
                Console.Out.WriteLine($"gate: {candidate} vs champion {current.Champion}: {decision.Reason}");
                if (!decision.Promote)
                {
                    Console.Error.WriteLine($"refused: {candidate} is not promoted; the deployment is unchanged.");
                    return 3;
                }
            }
            return Change(parse.GetValue(repository)!, parse.GetValue(deployment)!, parse.GetValue(features)!, spec => spec.Promote(candidate));
        }));
        return command;
    }

    /// <summary>The promotion gate on the labelled events both models predicted, from the live evaluation's windows in Redis.</summary>
    private static async Task<GateDecision> GateAsync(string redisConfiguration, string ns, string champion, string challenger, double alpha, double minimumGain)
    {
        using var redis = await ConnectionMultiplexer.ConnectAsync(redisConfiguration).ConfigureAwait(false);
        var (a, b, y) = await RedisEvaluationWindows.Reader(redis.GetDatabase(), ns).PairedAsync(champion, challenger).ConfigureAwait(false);
        return PromotionGate.Decide(DeLong.Compare(a, b, y), alpha, minimumGain);
    }

    private static Command Rollback()
    {
        var deployment = DeploymentOption();
        var repository = new Option<string>("--repository") { Description = "Model repository.", DefaultValueFactory = _ => DefaultRepository };
        var features = new Option<string>("--features") { Description = "Feature-set definition the processors serve.", DefaultValueFactory = _ => DefaultFeatures };
        var command = new Command("rollback",
            "Serve the previous champion again (the one the last 'model promote' replaced), as the next version of the deployment; a second rollback undoes the first.")
        {
            deployment, repository, features,
        };
        command.SetAction(parse => Guard(() => Change(parse.GetValue(repository)!, parse.GetValue(deployment)!, parse.GetValue(features)!, spec => spec.Rollback())));
        return command;
    }

    /// <summary>Applies a change to the deployment file: checks the new champion loads against the feature set, then writes the file atomically.</summary>
    private static int Change(string repository, string file, string featuresPath, Func<DeploymentSpec, DeploymentSpec> change)
    {
        var path = Path.IsPathRooted(file) ? file : Path.Combine(repository, file);
        var current = DeploymentSpec.LoadFile(path);
        var next = change(current);
        var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(featuresPath));
        var dir = ModelRepository.Resolve(repository, next.Champion.Name, next.Champion.Version);
        using (var scorer = new OnnxScorer(dir, plan))
        {
            using var served = new OnnxScorer(ModelRepository.Resolve(repository, current.Champion.Name, current.Champion.Version), plan);
            if (scorer.OutputWidth != served.OutputWidth)
                throw new InvalidDataException($"{next.Champion} has {scorer.OutputWidth} score column(s), the serving champion {served.OutputWidth}: processors cannot swap it in without a restart.");
        }
        next.Save(path);
        Console.Out.WriteLine($"{path}: v{current.Version} → v{next.Version}: champion {current.Champion} → {next.Champion}" +
                              (next.Canary is { } c ? $"; canary {c.Model}" : "") +
                              (next.Shadows.Count > 0 ? $"; shadows {string.Join(", ", next.Shadows.Select(x => x.Model))}" : "") +
                              (next.Fallback is { } f ? $"; fallback {f.Model}" : ""));
        Console.Out.WriteLine("Processors serving this file apply it within Model:WatchIntervalMs (default 10 s) plus the time to load the new models; the deployment_version field of each prediction says which version scored it.");
        return 0;
    }

    private static Command Inspect()
    {
        var file = new Argument<string>("file") { Description = "The .onnx file (or a model version directory holding model.onnx)." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var features = new Option<string?>("--features")
        {
            Description = $"Feature-set definition whose names per-feature inputs are matched against [default: {DefaultFeatures}, when it exists].",
        };
        var command = new Command("inspect",
            "Inputs and outputs with types and shapes, what kind of model it looks like (regressor, binary or multiclass classifier, " +
            "probability tensor or ZipMap), its class labels, which output and column would be the score, and whether the batch dimension is fixed.")
        {
            file, json, features,
        };
        command.SetAction(parse => Guard(() =>
        {
            var path = parse.GetValue(file)!;
            if (Directory.Exists(path)) path = Path.Combine(path, "model.onnx");
            var definition = parse.GetValue(features) ?? (File.Exists(PathResolver.Resolve(DefaultFeatures)) ? DefaultFeatures : null);
            var names = definition is null ? null : FeatureSetLoader.LoadFile(PathResolver.Resolve(definition)).Features.Select(f => f.Name).ToList();
            var info = OnnxModelInspection.Inspect(path, names);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(info, ModelJson.Default.OnnxModelInspection));
                return 0;
            }
            var o = Console.Out;
            o.WriteLine(info.Path);
            foreach (var p in info.Inputs) o.WriteLine($"  input   {p.Name,-28} {p.Type}");
            foreach (var p in info.Outputs) o.WriteLine($"  output  {p.Name,-28} {p.Type}");
            var layout = info.Layout;
            o.WriteLine($"  feed    {(layout.Matrix is { } m ? $"features as '{m}'" : layout.PerFeature.Count > 0 ? $"one input per feature ({layout.PerFeature.Count})" : "? (see notes)")}" +
                        (layout.Extra.Count > 0 ? $"; not features: {string.Join(", ", layout.Extra)}" : ""));
            o.WriteLine($"  kind    {info.Kind}");
            if (info.ClassLabels is { } classes) o.WriteLine($"  classes {string.Join(", ", classes)}");
            o.WriteLine($"  score   {(info.ScoreOutput is null ? "-" : $"{info.ScoreOutput} column {(info.ScoreColumn?.ToString(CultureInfo.InvariantCulture) ?? "? (see notes)")} of {info.ScoreColumns?.ToString(CultureInfo.InvariantCulture) ?? "?"}")}");
            o.WriteLine($"  label   {info.LabelOutput ?? "-"}");
            o.WriteLine($"  batch   {info.BatchDimension}");
            foreach (var note in info.Notes) o.WriteLine($"  note    {note}");
            return 0;
        }));
        return command;
    }

    private static Command Import()
    {
        var file = new Argument<string>("file") { Description = "The .onnx file to import." };
        var name = new Option<string>("--name") { Description = "Model name (the repository directory).", Required = true };
        var version = new Option<string?>("--version") { Description = "Version directory (default: one above the highest numeric version, or 1)." };
        var repository = new Option<string>("--repository") { Description = "Model repository.", DefaultValueFactory = _ => DefaultRepository };
        var features = new Option<string>("--features") { Description = "Feature-set definition the model was trained on (its input columns, in this order).", DefaultValueFactory = _ => DefaultFeatures };
        var input = new Option<string?>("--input") { Description = "The float [N, F] input, when the model has several." };
        var columns = new Option<string?>("--columns")
        {
            Description = "The features the model's input columns hold, comma-separated, in column order, when it reads a subset of the feature set or another order (default: the whole feature set, in its order).",
        };
        var scoreOutput = new Option<string?>("--score-output") { Description = "The output holding the scores, when several could (a classifier's probabilities)." };
        var labelOutput = new Option<string?>("--label-output") { Description = "The class-label output (default: the first int64 or string tensor output)." };
        var positive = new Option<string?>("--positive-class") { Description = "Binary classifiers: the class whose probability is the score (default: the class labelled 1 or true)." };
        var description = new Option<string?>("--description") { Description = "Description for the manifest." };
        var trainingSet = new Option<string?>("--training-set") { Description = "A training set of this feature set (backfill's Parquet): also build the reference profile for drift monitoring." };
        var command = new Command("import",
            "Write <repository>/<name>/<version>/ with the model and a manifest inferred from the graph and the feature set; refuse what the graph leaves " +
            "ambiguous with the option that settles it; load and score it as serve would before it counts as imported. Then: streaminference profile --model <dir> for drift.")
        {
            file, name, version, repository, features, input, columns, scoreOutput, labelOutput, positive, description, trainingSet,
        };
        command.SetAction(parse => Guard(() =>
        {
            var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(parse.GetValue(features)!));
            // The training set is read and checked first: a refused one leaves nothing imported.
            TrainingSet? data = null;
            if (parse.GetValue(trainingSet) is { } setPath)
            {
                if (!File.Exists(setPath)) throw new FileNotFoundException($"--training-set '{setPath}' does not exist.");
                data = TrainingSet.ReadAsync(setPath, CancellationToken.None).GetAwaiter().GetResult();
                if (data.FeatureSet != plan.Name || data.FeatureSetVersion != plan.Version)
                    throw new InvalidDataException($"{setPath} was built with feature set '{data.FeatureSet}' v{data.FeatureSetVersion}, not '{plan.Name}' v{plan.Version}.");
            }
            var result = ModelImporter.Import(new ModelImportRequest(parse.GetValue(file)!, parse.GetValue(repository)!, parse.GetValue(name)!, parse.GetValue(version),
                parse.GetValue(input), parse.GetValue(scoreOutput), parse.GetValue(labelOutput), parse.GetValue(positive), parse.GetValue(description),
                parse.GetValue(columns)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)), plan);
            Console.Out.WriteLine($"imported {result.Manifest.Name}@{result.Manifest.Version} ({result.Kind}) into {Path.GetRelativePath(Directory.GetCurrentDirectory(), result.Directory)}");
            var reads = result.Manifest.Features.Count == plan.FeatureCount ? "" : $" ({result.Manifest.Features.Count} of {plan.FeatureCount} features: {string.Join(", ", result.Manifest.Features)})";
            Console.Out.WriteLine($"  input {(result.Manifest.FeatureInputs is null ? result.Manifest.Input : "one per feature")}{reads}, score {result.Manifest.ScoreOutput}, label {result.Manifest.LabelOutput ?? "-"}" +
                                  (result.Manifest.PositiveClass is { } p ? $", positive class {p}" : ""));
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  validation: {result.ValidationRows} rows scored, score min {result.ScoreMin:0.####} mean {result.ScoreMean:0.####} max {result.ScoreMax:0.####}"));
            if (data is not null)
            {
                var (profile, scores) = ProfileBuilder.BuildAndSave(result.Directory, data, plan);
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  reference profile: {profile.Rows:N0} training rows, mean score {profile.Prediction.Mean:0.####} ({ReferenceProfile.FileName})"));
                // How well the model ranks this set's labelled rows: the first figure of whether it is right here.
                var labelled = Enumerable.Range(0, data.Count).Where(i => double.IsFinite(data.Labels[i])).ToArray();
                if (labelled.Any(i => data.Labels[i] > 0.5) && labelled.Any(i => data.Labels[i] <= 0.5))
                {
                    var auc = MlNetModels.Auc([.. labelled.Select(i => scores[i])], [.. labelled.Select(i => data.Labels[i] > 0.5)]);
                    var manifestPath = Path.Combine(result.Directory, "manifest.json");
                    var manifest = ModelManifest.Load(manifestPath);
                    manifest.Metrics ??= [];
                    manifest.Metrics["training_set_auc"] = Math.Round(auc, 4);
                    manifest.Metrics["training_set_rows"] = labelled.Length;
                    File.WriteAllText(manifestPath, manifest.ToJson() + "\n");
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  AUC on the training set's {labelled.Length:N0} labelled rows: {auc:0.0000} (manifest metrics.training_set_auc)"));
                }
            }
            return 0;
        }));
        return command;
    }

    private static Command Quantize()
    {
        var source = new Argument<string>("model") { Description = "The model version directory to quantize (<repository>/<name>/<version>)." };
        var type = new Option<string>("--type")
        {
            Description = "int8: dynamic INT8 (int8 weights per output column, uint8 activations quantized per tensor at run time; MatMulInteger, fused by ONNX Runtime), " +
                          "for the CPU. fp16: float16 MatMul/Gemm weights and products between casts, for CUDA; on a CPU without float16 MatMul kernels ONNX Runtime " +
                          "casts the weights back to float when it loads the model and runs the float graph: half the file, no faster.",
            DefaultValueFactory = _ => "int8",
        };
        type.AcceptOnlyFromAmong("int8", "fp16");
        var name = new Option<string?>("--name") { Description = "Name of the quantized model [default: the source's name with -int8 or -fp16]." };
        var version = new Option<string?>("--version") { Description = "Its version [default: the source's version]." };
        var repository = new Option<string?>("--repository") { Description = "Repository for it [default: the source's repository]." };
        var features = new Option<string>("--features") { Description = "Feature-set definition the model was trained on.", DefaultValueFactory = _ => DefaultFeatures };
        var trainingSet = new Option<string?>("--training-set")
        {
            Description = "A training set of this feature set (backfill's Parquet): build the quantized model's reference profile, and measure its AUC and the source's " +
                          "on the same held-out rows (after the source's time split, from its manifest; else the latest --test-fraction).",
        };
        var testFraction = new Option<double>("--test-fraction") { Description = "Held-out share when the source's manifest has no time split.", DefaultValueFactory = _ => 0.2 };
        var minDimension = new Option<int>("--min-dimension") { Description = "Convert a weight only when both its dimensions are at least this.", DefaultValueFactory = _ => 16 };
        var reduceRange = new Option<bool>("--reduce-range") { Description = "int8: 7-bit weights, for processors without VNNI (AVX2 only), whose u8×s8 multiply-add saturates." };
        var command = new Command("quantize",
            "Write a cheaper variant of a model as a new model version: its MatMul/Gemm weights quantized, every other operator as it was, imported and validated " +
            "like any model (same input, outputs and columns as the source). Models with nothing to convert are refused with the reason.")
        {
            source, type, name, version, repository, features, trainingSet, testFraction, minDimension, reduceRange,
        };
        command.SetAction(parse => Guard(() =>
        {
            var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(parse.GetValue(features)!));
            var options = new QuantizationOptions(parse.GetValue(type) == "fp16" ? QuantizationType.Fp16 : QuantizationType.Int8, parse.GetValue(minDimension), parse.GetValue(reduceRange));
            options.Validate();
            TrainingSet? data = null;
            if (parse.GetValue(trainingSet) is { } setPath)
            {
                if (!File.Exists(setPath)) throw new FileNotFoundException($"--training-set '{setPath}' does not exist.");
                data = TrainingSet.ReadAsync(setPath, CancellationToken.None).GetAwaiter().GetResult();
            }
            var result = ModelQuantization.Run(new QuantizeRequest(parse.GetValue(source)!, options, parse.GetValue(repository), parse.GetValue(name), parse.GetValue(version)),
                plan, data, parse.GetValue(testFraction), new Progress<string>(line => Console.Error.WriteLine($"quantize: {line}")));
            var o = Console.Out;
            var inv = CultureInfo.InvariantCulture;
            o.WriteLine($"wrote {result.Manifest.Name}@{result.Manifest.Version} into {Path.GetRelativePath(Directory.GetCurrentDirectory(), result.Directory)}");
            foreach (var n in result.Report.Nodes)
                o.WriteLine(string.Create(inv, $"  {(n.Reason is null ? "converted" : "kept"),-9} {n.OpType} {n.Node} ({n.Weight}{(n.Rows > 0 ? $", {n.Rows}×{n.Columns}" : "")}){(n.Reason is null ? "" : $": {n.Reason}")}"));
            o.WriteLine(string.Create(inv, $"  size: model.onnx {result.FileBytes / 1e6:0.00} MB (source {result.SourceFileBytes / 1e6:0.00} MB); weights {result.Report.WeightBytesAfter / 1e6:0.00} MB (were {result.Report.WeightBytesBefore / 1e6:0.00} MB)"));
            if (options.Type == QuantizationType.Fp16)
                o.WriteLine("  note: FP16 is for CUDA (Model:Device=cuda). On a CPU without float16 MatMul kernels, ONNX Runtime casts the weights back to float " +
                            "when it loads the model: no faster than the source (docs/cheaper-models.md).");
            if (result.HeldOut is { } held)
            {
                o.WriteLine(string.Create(inv, $"  held-out AUC on {held.Rows.Length:N0} rows ({held.Rule}): {result.Auc:0.00000}, source {result.SourceAuc:0.00000} (difference {result.Auc - result.SourceAuc:+0.00000;-0.00000;0.00000})"));
                o.WriteLine(string.Create(inv, $"  score difference to the source on those rows: max {result.MaxAbsScoreDiff:G3}, mean {result.MeanAbsScoreDiff:G3}"));
                o.WriteLine($"  reference profile: {ReferenceProfile.FileName}");
            }
            return 0;
        }));
        return command;
    }

    private static Command Validate()
    {
        var target = new Argument<string>("dir") { Description = "A model repository or one model version directory.", DefaultValueFactory = _ => DefaultRepository };
        var features = new Option<string>("--features") { Description = "Feature-set definition the models must be trained on.", DefaultValueFactory = _ => DefaultFeatures };
        var command = new Command("validate",
            "Load every model version as serve would (identity against the path, feature set, input, outputs, positive class, a warm-up run, " +
            "the reference profile's feature set): one line per problem, exit code 1 when there is any.")
        {
            target, features,
        };
        command.SetAction(parse => Guard(() =>
        {
            var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(parse.GetValue(features)!));
            var dir = parse.GetValue(target)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"'{dir}' is not a directory.");
            var versions = File.Exists(Path.Combine(dir, "manifest.json")) || File.Exists(Path.Combine(dir, "model.onnx"))
                ? [dir]
                : Directory.GetDirectories(dir).SelectMany(Directory.GetDirectories).Order(StringComparer.Ordinal).ToList();
            if (versions.Count == 0) throw new DirectoryNotFoundException($"'{dir}' holds no model versions (<name>/<version>/model.onnx).");
            var problems = 0;
            foreach (var version in versions)
            {
                var (problem, warnings) = Check(version, plan);
                if (problem is null) Console.Out.WriteLine($"ok       {version}");
                else
                {
                    problems++;
                    Console.Out.WriteLine($"problem  {version}: {problem}");
                }
                foreach (var warning in warnings) Console.Out.WriteLine($"warning  {version}: {warning}");
            }
            Console.Out.WriteLine($"{versions.Count} versions, {problems} with problems");
            return problems == 0 ? 0 : 1;
        }));
        return command;
    }

    /// <summary>Problem: null when the version loads as serve would load it; else the first problem, in one line. Warnings: what serve would log at load.</summary>
    private static (string? Problem, IReadOnlyList<string> Warnings) Check(string version, FeaturePlan plan)
    {
        try
        {
            var full = Path.GetFullPath(version).TrimEnd(Path.DirectorySeparatorChar);
            ModelRepository.CheckIdentity(full, Path.GetFileName(Path.GetDirectoryName(full)!), Path.GetFileName(full));
            using var scorer = new OnnxScorer(version, plan);
            var profile = Path.Combine(version, ReferenceProfile.FileName);
            if (File.Exists(profile))
            {
                var p = ReferenceProfile.Load(profile);
                if (p.Model != scorer.ModelName || p.ModelVersion != scorer.ModelVersion || p.FeatureSet != plan.Name || p.FeatureSetVersion != plan.Version)
                    return ($"{ReferenceProfile.FileName} is for {p.Model}@{p.ModelVersion} on '{p.FeatureSet}' v{p.FeatureSetVersion}, not this model on '{plan.Name}' v{plan.Version}", scorer.Warnings);
            }
            return (null, scorer.Warnings);
        }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or InvalidOperationException or ArgumentException)
        {
            return (e.Message, []);
        }
    }

    private static Command List()
    {
        var repository = new Argument<string>("repository") { Description = "Model repository.", DefaultValueFactory = _ => DefaultRepository };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var command = new Command("list", "Models in a repository: versions, the feature set of each, its metrics, whether it has a reference profile.")
        {
            repository, json,
        };
        command.SetAction(parse => Guard(() =>
        {
            var dir = parse.GetValue(repository)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"'{dir}' is not a directory.");
            var entries = new List<ModelListEntry>();
            foreach (var model in Directory.GetDirectories(dir).Order(StringComparer.Ordinal))
            foreach (var version in Directory.GetDirectories(model)
                         .OrderBy(d => long.TryParse(Path.GetFileName(d), out var v) ? v : long.MaxValue).ThenBy(d => d, StringComparer.Ordinal))
            {
                var manifestPath = Path.Combine(version, "manifest.json");
                ModelManifest? manifest = null;
                try
                {
                    if (File.Exists(manifestPath)) manifest = ModelManifest.Load(manifestPath);
                }
                catch (InvalidDataException)
                {
                }
                entries.Add(new ModelListEntry(Path.GetFileName(model), Path.GetFileName(version),
                    manifest is null ? null : $"{manifest.FeatureSet} v{manifest.FeatureSetVersion}",
                    manifest?.Metrics ?? [], File.Exists(Path.Combine(version, ReferenceProfile.FileName)), File.Exists(Path.Combine(version, "model.onnx"))));
            }
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(entries, ModelJson.Default.ListModelListEntry));
                return 0;
            }
            Console.Out.WriteLine($"{"model",-24} {"version",-8} {"feature set",-22} {"profile",-8} metrics");
            foreach (var e in entries)
                Console.Out.WriteLine($"{e.Name,-24} {e.Version,-8} {e.FeatureSet ?? (e.HasModel ? "(no manifest)" : "(empty)"),-22} {(e.HasProfile ? "yes" : "no"),-8} " +
                                      string.Join(", ", e.Metrics.Select(kv => $"{kv.Key} {Metric(kv.Value)}")));
            return 0;
        }));
        return command;
    }

    /// <summary>Counts and times as integers, small differences in scientific notation, the rest to four decimals.</summary>
    private static string Metric(double v) => v.ToString(
        v == Math.Floor(v) && Math.Abs(v) < 1e15 ? "0" : Math.Abs(v) < 1e-3 ? "0.#E+0" : "0.####", CultureInfo.InvariantCulture);

    private static int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is FeatureDefinitionException or InvalidDataException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
                                      or InvalidOperationException or DeploymentException or RedisException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}

public sealed record ModelListEntry(string Name, string Version, string? FeatureSet, Dictionary<string, double> Metrics, bool HasProfile, bool HasModel);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = false)]
[JsonSerializable(typeof(OnnxModelInspection))]
[JsonSerializable(typeof(List<ModelListEntry>))]
public sealed partial class ModelJson : JsonSerializerContext;
