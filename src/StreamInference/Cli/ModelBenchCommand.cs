using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

/// <summary>
/// <c>bench model</c>: scoring throughput against batch size (1 … 4096) for one model on one device,
/// through the serving scorer, with the speed-up over batch 1 and, on CUDA, the GPU's utilization
/// (sampled with nvidia-smi). Runs are merged by label into one results file, so CPU and GPU runs of
/// the same model sit side by side.
/// </summary>
public static class ModelBenchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model version directory (model.onnx + manifest.json).", DefaultValueFactory = _ => "models/fraud-logreg/3" };
        var features = new Option<string>("--features") { Description = "Feature-set definition the model was trained on.", DefaultValueFactory = _ => "schemas/features/card_payments.yaml" };
        var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:<id> or auto (as Model:Device).", DefaultValueFactory = _ => "cpu" };
        var sizes = new Option<string>("--batch-sizes") { Description = "Comma-separated batch sizes.", DefaultValueFactory = _ => "1,2,4,8,16,32,64,128,256,512,1024,2048,4096" };
        var seconds = new Option<double>("--seconds") { Description = "Measuring time per batch size (after 3 warm-up runs; at least 5 runs).", DefaultValueFactory = _ => 2.0 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads (Model:IntraOpThreads; 0 = its choice).", DefaultValueFactory = _ => 0 };
        var label = new Option<string?>("--label") { Description = "Name of this run in the results (default: the device and this machine's processor count / GPU name)." };
        var output = new Option<string>("--output") { Description = "Results without extension: <output>.md and <output>.json; runs with other labels already there are kept.", DefaultValueFactory = _ => "docs/model-benchmarks" };
        var command = new Command("model",
            "Scoring throughput vs batch size for one model on one device (serving scorer, pooled batches): events/s, time per batch, " +
            "speed-up over batch 1, GPU utilization on CUDA (nvidia-smi). Merges the run into <output>.md/.json by label.")
        {
            model, features, device, sizes, seconds, threads, label, output,
        };
        command.SetAction(parse =>
        {
            try
            {
                return Run(parse.GetValue(model)!, parse.GetValue(features)!, parse.GetValue(device)!, parse.GetValue(sizes)!, parse.GetValue(seconds),
                    parse.GetValue(threads), parse.GetValue(label), parse.GetValue(output)!);
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or FileNotFoundException or InvalidOperationException or FeatureDefinitionException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    private static int Run(string modelDir, string featuresFile, string deviceText, string sizesText, double seconds, int threads, string? label, string output)
    {
        if (!ExecutionDevice.TryParse(deviceText, out var device, out var deviceError)) throw new ArgumentException(deviceError.Replace("Model:Device", "--device", StringComparison.Ordinal));
        var sizes = ParseBatchSizes(sizesText);
        if (sizes.Length == 0) throw new ArgumentException("--batch-sizes is empty.");
        if (seconds is <= 0 or > 600) throw new ArgumentException("--seconds must be between 0 and 600.");

        var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(featuresFile));
        var dir = PathResolver.Resolve(modelDir);
        using var scorer = new OnnxScorer(dir, plan, new OnnxScorerOptions { Device = device, IntraOpThreads = threads });
        if (scorer.FallbackReason is not null) Console.Error.WriteLine($"warning: --device auto runs on the CPU: {scorer.FallbackReason}");
        var gpuName = scorer.ExecutionProvider.StartsWith("cuda", StringComparison.Ordinal) ? NvidiaSmi.Query(device.DeviceId, "name") : null;
        label ??= gpuName is not null ? $"{scorer.ExecutionProvider} ({gpuName})" : $"{scorer.ExecutionProvider} ({Environment.ProcessorCount} cores)";
        Console.Error.WriteLine($"{scorer.ModelName}@{scorer.ModelVersion} on {scorer.ExecutionProvider}: batch sizes {string.Join(", ", sizes)}, {seconds:0.#} s each");

        var rows = new JsonArray();
        double? batch1 = null;
        foreach (var size in sizes)
        {
            using var sampler = gpuName is not null ? NvidiaSmi.StartSampling(device.DeviceId) : null;
            var m = BatchSweep.Measure(scorer, plan, size, TimeSpan.FromSeconds(seconds));
            var utilization = sampler?.StopAndAverage();
            if (size == 1) batch1 = m.EventsPerSecond;
            var gpuText = utilization is { } u ? string.Create(CultureInfo.InvariantCulture, $"  GPU {u:0}%") : "";
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"batch {size,5}: {m.EventsPerSecond,14:N0} events/s  {m.MeanMs,9:0.000} ms/batch (p50 {m.P50Ms:0.000}, p99 {m.P99Ms:0.000})  {m.Runs} runs{gpuText}"));
            rows.Add(new JsonObject
            {
                ["batchSize"] = size, ["runs"] = m.Runs, ["eventsPerSecond"] = Math.Round(m.EventsPerSecond, 1),
                ["meanMs"] = Math.Round(m.MeanMs, 4), ["p50Ms"] = Math.Round(m.P50Ms, 4), ["p99Ms"] = Math.Round(m.P99Ms, 4),
                ["gpuUtilizationPercent"] = utilization is { } v ? Math.Round(v, 1) : null,
            });
        }

        var best = rows.Select(r => r!.AsObject()).MaxBy(r => (double)r["eventsPerSecond"]!)!;
        var manifest = scorer.Manifest;
        var run = new JsonObject
        {
            ["label"] = label,
            ["date"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["command"] = "streaminference bench model " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).SkipWhile(a => a != "model").Skip(1)),
            ["model"] = $"{manifest.Name}@{manifest.Version}",
            ["parameters"] = manifest.Metrics?.GetValueOrDefault("parameters") is > 0 and var p ? p : null,
            ["executionProvider"] = scorer.ExecutionProvider,
            ["onnxRuntimePackage"] = OnnxScorer.PackageFlavor,
            ["processors"] = Environment.ProcessorCount,
            ["gpu"] = gpuName,
            ["intraOpThreads"] = threads,
            ["secondsPerBatchSize"] = seconds,
            ["batch1EventsPerSecond"] = batch1 is { } b1 ? Math.Round(b1, 1) : null,
            ["bestBatchSize"] = (int)best["batchSize"]!,
            ["bestEventsPerSecond"] = (double)best["eventsPerSecond"]!,
            ["speedupOverBatch1"] = batch1 is { } one ? Math.Round((double)best["eventsPerSecond"]! / one, 2) : null,
            ["gpuUtilizationAtBestPercent"] = best["gpuUtilizationPercent"]?.DeepClone(),
            ["rows"] = rows,
        };
        var file = Save(output, run);
        Console.Error.WriteLine($"wrote {output}.md and {output}.json ({file["runs"]!.AsArray().Count} run(s))");
        Console.WriteLine(run.ToJsonString());
        return 0;
    }

    /// <summary>--batch-sizes: comma-separated sizes between 1 and 65536, distinct and in order.</summary>
    public static int[] ParseBatchSizes(string text) => [.. text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
        .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 65_536 ? n
            : throw new ArgumentException($"--batch-sizes: '{s}' is not a batch size between 1 and 65536.")).Distinct().Order()];

    private static JsonObject Save(string output, JsonObject run)
    {
        var jsonPath = output + ".json";
        var file = File.Exists(jsonPath) ? JsonNode.Parse(File.ReadAllText(jsonPath))!.AsObject() : new JsonObject { ["runs"] = new JsonArray() };
        var runs = file["runs"]!.AsArray();
        foreach (var old in runs.Where(r => (string?)r!["label"] == (string?)run["label"] && (string?)r!["model"] == (string?)run["model"]).ToList()) runs.Remove(old);
        runs.Add(run);
        Write(output, file);
        return file;
    }

    /// <summary>Merges a <c>bench variants</c> comparison into the results, replacing one with the same label and models.</summary>
    public static void SaveComparison(string output, JsonObject comparison)
    {
        var jsonPath = output + ".json";
        var file = File.Exists(jsonPath) ? JsonNode.Parse(File.ReadAllText(jsonPath))!.AsObject() : new JsonObject { ["runs"] = new JsonArray() };
        if (file["comparisons"] is not JsonArray comparisons) file["comparisons"] = comparisons = [];
        static string Models(JsonNode c) => string.Join(",", c["variants"]!.AsArray().Select(v => (string)v!["model"]!));
        foreach (var old in comparisons.Where(c => (string?)c!["label"] == (string?)comparison["label"] && Models(c!) == Models(comparison)).ToList()) comparisons.Remove(old);
        comparisons.Add(comparison);
        Write(output, file);
    }

    private static void Write(string output, JsonObject file)
    {
        var jsonPath = output + ".json";
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!);
        File.WriteAllText(jsonPath, file.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.WriteAllText(output + ".md", Markdown(file));
    }

    /// <summary>The vector and matrix instruction sets of this processor that ONNX Runtime's float and int8 kernels use (Linux: /proc/cpuinfo).</summary>
    public static string? VectorInstructionSets()
    {
        const string cpuinfo = "/proc/cpuinfo";
        if (!File.Exists(cpuinfo)) return null;
        var flags = File.ReadLines(cpuinfo).FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal))?.Split(':', 2)[1]
            .Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        if (flags is null) return null;
        string[] known = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16", "amx_fp16"];
        return string.Join(" ", known.Where(flags.Contains));
    }

    private static string Markdown(JsonObject file)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine("# Model scoring throughput");
        if (file["comparisons"] is JsonArray { Count: > 0 } comparisons)
        {
            md.AppendLine();
            md.AppendLine("## Cheaper variants, side by side");
            md.AppendLine();
            md.AppendLine("Written by `streaminference bench variants`: each model scores the same held-out rows (AUC) and is timed through the serving scorer " +
                          "(pooled batches, pseudo-random feature values, 3 warm-up runs then at least 5 runs per size), one model after the other in one process. " +
                          "Speed-ups and AUC differences are against the first model of the table.");
            foreach (var c in comparisons.Select(x => x!.AsObject()))
            {
                md.AppendLine();
                md.AppendLine(inv, $"### {c["label"]}: {c["reference"]} and variants");
                md.AppendLine();
                md.AppendLine(inv, $"`{c["command"]}` ({c["date"]}, {c["processors"]} processors{(c["instructionSets"] is { } isa ? $" with {isa}" : "")}, ONNX Runtime {c["onnxRuntimePackage"]} package, " +
                                   $"{c["executionProvider"]}); held-out rows: {(int)c["heldOutRows"]!:N0}, {c["heldOutRule"]}.");
                md.AppendLine();
                md.AppendLine("| model | held-out AUC | Δ AUC | size on disk | batch 1 events/s | batch 256 events/s | best events/s (batch) | speed-up @256 | speed-up best | mean \\|Δ score\\| |");
                md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
                foreach (var v in c["variants"]!.AsArray().Select(x => x!.AsObject()))
                    md.AppendLine(inv, $"| {v["model"]} | {(double)v["heldOutAuc"]!:0.0000} | {(double)v["aucDifference"]!:+0.0000;-0.0000;0.0000} | {Size((double)v["fileBytes"]!)} | " +
                                       $"{(double)v["batch1EventsPerSecond"]!:N0} | {(double)v["batch256EventsPerSecond"]!:N0} | {(double)v["bestEventsPerSecond"]!:N0} ({v["bestBatchSize"]}) | " +
                                       $"{(double)v["speedupBatch256"]!:0.00}× | {(double)v["speedupBest"]!:0.00}× | {(double)v["meanAbsScoreDiff"]!:G3} |");
                md.AppendLine();
                foreach (var v in c["variants"]!.AsArray().Select(x => x!.AsObject()))
                    md.AppendLine(inv, $"- {v["model"]}: {v["description"]}");
            }
        }
        md.AppendLine();
        md.AppendLine("## Throughput vs batch size");
        md.AppendLine();
        md.AppendLine("Written by `streaminference bench model` (serving scorer: ONNX Runtime on pooled batches, pseudo-random feature values, " +
                      "3 warm-up runs then at least 5 runs per size). One table per model; a column per device.");
        var runs = file["runs"]!.AsArray();
        foreach (var byModel in runs.Select(r => r!.AsObject()).GroupBy(r => (string)r["model"]!))
        {
            var list = byModel.ToList();
            md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"### {byModel.Key}").AppendLine();
            foreach (var r in list)
            {
                md.AppendLine(inv, $"- **{r["label"]}**: `{r["command"]}` ({r["date"]}, {r["processors"]} processors, ONNX Runtime {r["onnxRuntimePackage"]} package" +
                                   $"{(r["parameters"] is null ? "" : $", {(double)r["parameters"]!:N0} parameters")}). " +
                                   $"Best: batch {r["bestBatchSize"]} at {(double)r["bestEventsPerSecond"]!:N0} events/s, " +
                                   $"{(r["speedupOverBatch1"] is null ? "no batch-1 run" : $"{(double)r["speedupOverBatch1"]!:0.0}× batch 1")}" +
                                   $"{(r["gpuUtilizationAtBestPercent"] is null ? "" : $", GPU utilization {(double)r["gpuUtilizationAtBestPercent"]!:0} %")}.");
            }
            md.AppendLine();
            md.Append("| batch |");
            foreach (var r in list) md.Append(inv, $" {r["label"]} events/s | ms/batch (p99) |");
            md.AppendLine();
            md.Append("|---:|");
            foreach (var _ in list) md.Append("---:|---:|");
            md.AppendLine();
            foreach (var size in list.SelectMany(r => r["rows"]!.AsArray().Select(x => (int)x!["batchSize"]!)).Distinct().Order())
            {
                md.Append(inv, $"| {size} |");
                foreach (var r in list)
                {
                    var row = r["rows"]!.AsArray().FirstOrDefault(x => (int)x!["batchSize"]! == size);
                    if (row is null) md.Append(" | |");
                    else md.Append(inv, $" {(double)row["eventsPerSecond"]!:N0}{(row["gpuUtilizationPercent"] is null ? "" : $" (GPU {(double)row["gpuUtilizationPercent"]!:0} %)")} | {(double)row["meanMs"]!:0.000} ({(double)row["p99Ms"]!:0.000}) |");
                }
                md.AppendLine();
            }
        }
        return md.ToString();
    }

    private static string Size(double bytes) => bytes >= 1_000_000
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:0.0} MB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e3:0.0} kB");

    /// <summary>nvidia-smi, where installed: the GPU's name, and its utilization sampled every 100 ms.</summary>
    private sealed class NvidiaSmi : IDisposable
    {
        private readonly Process _process;
        private readonly List<double> _samples = [];

        private NvidiaSmi(Process process)
        {
            _process = process;
            _process.OutputDataReceived += (_, e) =>
            {
                if (double.TryParse(e.Data?.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) lock (_samples) _samples.Add(v);
            };
            _process.BeginOutputReadLine();
        }

        /// <summary>nvidia-smi's -i for a CUDA device index: under CUDA_VISIBLE_DEVICES, CUDA's index N is the Nth entry there.</summary>
        private static string SmiDevice(int cudaDevice)
        {
            var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES")?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            return visible is { Length: > 0 } && cudaDevice < visible.Length ? visible[cudaDevice] : cudaDevice.ToString(CultureInfo.InvariantCulture);
        }

        public static string? Query(int device, string field)
        {
            try
            {
                using var p = Process.Start(new ProcessStartInfo("nvidia-smi", $"--query-gpu={field} --format=csv,noheader,nounits -i {SmiDevice(device)}")
                {
                    RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
                })!;
                var text = p.StandardOutput.ReadToEndAsync();
                if (!p.WaitForExit(10_000))
                {
                    p.Kill(entireProcessTree: true);   // a wedged driver: no name, no utilization
                    return null;
                }
                return p.ExitCode == 0 && text.Result.Trim() is { Length: > 0 } value ? value : null;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return null;   // not installed
            }
        }

        public static NvidiaSmi? StartSampling(int device)
        {
            try
            {
                var p = Process.Start(new ProcessStartInfo("nvidia-smi", $"--query-gpu=utilization.gpu --format=csv,noheader,nounits -i {SmiDevice(device)} -lms 100")
                {
                    RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
                })!;
                return new NvidiaSmi(p);
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return null;
            }
        }

        /// <summary>Mean utilization over the samples taken while measuring (the first, taken before the load, is dropped).</summary>
        public double? StopAndAverage()
        {
            if (!_process.HasExited) _process.Kill();
            _process.WaitForExit(5_000);
            lock (_samples) return _samples.Count > 1 ? _samples.Skip(1).Average() : _samples.Count == 1 ? _samples[0] : null;
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill();
            _process.Dispose();
        }
    }
}
