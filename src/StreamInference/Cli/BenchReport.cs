using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using StreamInference.Benchmarks;

namespace StreamInference.Cli;

public sealed class ThroughputRun
{
    public long Events { get; set; }
    public double Seconds { get; set; }
    public double EventsPerSecond { get; set; }
    public double CpuMicrosPerEvent { get; set; }
    /// <summary>CPU seconds per wall second over the measured span.</summary>
    public double CpuCoresBusy { get; set; }
}

/// <summary>One open-loop step (<see cref="OpenLoop"/>): a probe of the sustainable-rate search, or a latency step at a fraction of that rate.</summary>
public sealed class LatencyStep
{
    /// <summary>processor or passthrough.</summary>
    public string Consumer { get; set; } = "processor";
    /// <summary>Of the sustainable rate (latency steps); 0 for a probe of the search.</summary>
    public double Fraction { get; set; }
    public double TargetRate { get; set; }
    public double AchievedRate { get; set; }
    public int Samples { get; set; }
    public int Missing { get; set; }
    public double P50Ms { get; set; }
    public double P95Ms { get; set; }
    public double P99Ms { get; set; }
    public double MaxMs { get; set; }
    public long Produced { get; set; }
    /// <summary>How far the generator fell behind its schedule at worst.</summary>
    public double GeneratorMaxBehindMs { get; set; }
    /// <summary>Input high watermarks minus output high watermarks when the generator stopped.</summary>
    public long BacklogAtEnd { get; set; }
    /// <summary>How much the backlog grew over the measured part (after the warm-up).</summary>
    public long BacklogGrowth { get; set; }
    public bool Sustained { get; set; }
    /// <summary>The consumer's CPU time over the step ÷ events produced.</summary>
    public double CpuMicrosPerEvent { get; set; }
    public double CpuCoresBusy { get; set; }
}

public sealed record BenchGoal(string Name, string Target, string Measured, bool Met);

public sealed record BenchFigure(string Name, string Value);

public sealed class BenchResult
{
    public string Command { get; set; } = "";
    public string Date { get; set; } = "";
    public string Machine { get; set; } = "";
    public string Kafka { get; set; } = "";
    public string Redis { get; set; } = "";
    public int Events { get; set; }
    public int Partitions { get; set; }
    public double DurationSeconds { get; set; }
    public ThroughputRun Passthrough { get; set; } = new();
    public ThroughputRun Processor { get; set; } = new();
    public double ThroughputRatio => Passthrough.EventsPerSecond > 0 ? Math.Round(Processor.EventsPerSecond / Passthrough.EventsPerSecond, 3) : double.NaN;
    /// <summary>The consumer a team would write by hand (<c>bench baseline</c>), same input, features and model; measured over a fixed span.</summary>
    public ThroughputRun? Baseline { get; set; }
    public double BaselineRatio => Baseline is { EventsPerSecond: > 0 } b ? Math.Round(Processor.EventsPerSecond / b.EventsPerSecond, 2) : double.NaN;
    /// <summary>The processor serving a deployment with a shadow of the champion's cost (a copy of it under another name), same input.</summary>
    public ThroughputRun? WithShadow { get; set; }
    /// <summary>The same deployment without the shadow, on its own input of new events: the baseline of <see cref="WithShadow"/>.</summary>
    public ThroughputRun? ChampionAlone { get; set; }
    public double ShadowRatio => WithShadow is { EventsPerSecond: > 0 } w && ChampionAlone is { EventsPerSecond: > 0 } a ? Math.Round(w.EventsPerSecond / a.EventsPerSecond, 3) : double.NaN;
    /// <summary>The processor's own /metrics after the throughput run: batches and time per stage.</summary>
    public List<BenchFigure> Stages { get; set; } = [];
    /// <summary>Highest sustained rate of each (open loop, the generator running as its own process); 0 when not measured.</summary>
    public double ProcessorSustainable { get; set; }
    public double PassthroughSustainable { get; set; }
    public double SustainableRatio => PassthroughSustainable > 0 ? Math.Round(ProcessorSustainable / PassthroughSustainable, 3) : double.NaN;
    /// <summary>The probes of the sustainable-rate searches.</summary>
    public List<LatencyStep> Search { get; set; } = [];
    public List<LatencyStep> Latency { get; set; } = [];
    public List<MicroResult> Micro { get; set; } = [];
    public List<BenchGoal> Goals { get; set; } = [];
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(BenchResult))]
[JsonSerializable(typeof(BenchGenerate.Summary), TypeInfoPropertyName = "GeneratorSummary")]
public sealed partial class BenchJson : JsonSerializerContext;

/// <summary>Goals of the performance work, and the results file in Markdown and JSON.</summary>
public static class BenchReport
{
    public static IEnumerable<BenchGoal> Goals(BenchResult r)
    {
        if (r.PassthroughSustainable > 0)
            yield return new BenchGoal("processor ÷ passthrough, sustainable rates (open loop, generator running)", "≥ 0.6", F(r.SustainableRatio, "0.000"), r.SustainableRatio >= 0.6);
        yield return new BenchGoal("processor ÷ passthrough, backlog throughput (nothing else running)", "≥ 0.6", F(r.ThroughputRatio, "0.000"), r.ThroughputRatio >= 0.6);
        if (r.Baseline is not null)
            yield return new BenchGoal("processor ÷ hand-written baseline throughput", "≥ 10×", F(r.BaselineRatio, "0.0") + "×", r.BaselineRatio >= 10);
        if (r.WithShadow is not null)
            yield return new BenchGoal("throughput with a shadow of the champion's cost ÷ without", "≥ 0.8", F(r.ShadowRatio, "0.000"), r.ShadowRatio >= 0.8);
        yield return new BenchGoal("CPU per event, full pipeline", "≤ 12 µs", F(r.Processor.CpuMicrosPerEvent, "0.0") + " µs", r.Processor.CpuMicrosPerEvent <= 12);
        if (r.Latency.FirstOrDefault(l => Math.Abs(l.Fraction - 0.5) < 1e-9) is { } half)
            yield return new BenchGoal($"p99 event-to-prediction at 50 % of the {(r.ProcessorSustainable > 0 ? "sustainable" : "backlog")} rate", "≤ 25 ms", F(half.P99Ms, "0.0") + " ms", half.P99Ms <= 25);
        foreach (var group in new[] { "batcher", "offsets", "assembly" })
        {
            var rows = r.Micro.Where(m => m.Group == group && !m.Baseline && m.AllocatedBytesPerEvent is not null).ToList();
            if (rows.Count == 0) continue;
            var worst = rows.Max(m => m.AllocatedBytesPerEvent!.Value);
            yield return new BenchGoal($"allocated per event, {group}", "0 B", F(worst, "0.##") + " B", worst < 0.5);
        }
        if (Speedup(r.Micro, "redis-fetch", "256") is { } redis)
            yield return new BenchGoal("Redis pipelined ÷ per-key at batch 256", "≥ 5×", F(redis, "0.0") + "×", redis >= 5);
        if (Speedup(r.Micro, "onnx-score", "256") is { } onnx)
            yield return new BenchGoal("ONNX Runtime pooled ÷ allocating at batch 256 (no goal; reported)", "> 1×", F(onnx, "0.00") + "×", onnx > 1);
    }

    /// <summary>Baseline time ÷ the other method's time, for the rows whose parameters mention <paramref name="parameter"/>.</summary>
    private static double? Speedup(List<MicroResult> micro, string group, string parameter)
    {
        var rows = micro.Where(m => m.Group == group && ParameterValues(m.Parameters).Contains(parameter)).ToList();
        var baseline = rows.FirstOrDefault(m => m.Baseline);
        var other = rows.FirstOrDefault(m => !m.Baseline);
        return baseline is null || other is null || other.NsPerEvent <= 0 ? null : baseline.NsPerEvent / other.NsPerEvent;
    }

    private static string[] ParameterValues(string parameters) =>
        parameters.Split([',', ';', ' ', '='], StringSplitOptions.RemoveEmptyEntries);

    public static string Json(BenchResult r) => JsonSerializer.Serialize(r, BenchJson.Default.BenchResult);

    public static string Markdown(BenchResult r)
    {
        var b = new StringBuilder();
        b.AppendLine("# Benchmarks");
        b.AppendLine();
        b.AppendLine($"Written by `{r.Command}` on {r.Date} ({r.DurationSeconds:0} s). Machine: {r.Machine}.");
        b.AppendLine($"Kafka: {r.Kafka}. Redis: {r.Redis}. The processor, the passthrough and the hand-written baseline run as child processes, one after the other, " +
                     "so each CPU figure is that process's own; the services share the same cores. Machine-readable: the `.json` beside this file.");
        b.AppendLine();
        b.AppendLine("## Goals");
        b.AppendLine();
        b.AppendLine("| goal | target | measured | |");
        b.AppendLine("|---|---|---|---|");
        foreach (var g in r.Goals) b.AppendLine($"| {g.Name} | {g.Target} | {g.Measured} | {(g.Met ? "met" : "not met")} |");
        b.AppendLine();
        b.AppendLine($"## End to end: {r.Events:N0} events, {r.Partitions} partitions");
        b.AppendLine();
        b.AppendLine("Throughput from the output topic's high watermarks, from a quarter of the output (the first quarter is warm-up: JIT tiering, connections, first fetches) to the last record; CPU is the child process's user + system time over the same span. " +
                     "The hand-written baseline is too slow to wait for: it is measured from the end of its warm-up (a few seconds after its first prediction, or a quarter of the output) over a fixed span.");
        b.AppendLine();
        b.AppendLine("| run | events/s | CPU-µs/event | cores busy |");
        b.AppendLine("|---|---:|---:|---:|");
        b.AppendLine($"| passthrough (raw Confluent.Kafka consume → produce) | {r.Passthrough.EventsPerSecond:N0} | {r.Passthrough.CpuMicrosPerEvent:0.00} | {r.Passthrough.CpuCoresBusy:0.00} |");
        b.AppendLine($"| processor (decode, Redis features, ONNX Runtime, predictions, drift) | {r.Processor.EventsPerSecond:N0} | {r.Processor.CpuMicrosPerEvent:0.00} | {r.Processor.CpuCoresBusy:0.00} |");
        if (r.Baseline is { } hand)
            b.AppendLine($"| baseline, hand-written consumer (Confluent Avro deserializer, per-event awaited Redis reads and writes of the same features, one ONNX Runtime run per event; {hand.Seconds:0} s after a warm-up) | {hand.EventsPerSecond:N0} | {hand.CpuMicrosPerEvent:0.00} | {hand.CpuCoresBusy:0.00} |");
        if (r.ChampionAlone is { } alone)
            b.AppendLine($"| deployment, champion alone (new input events; the baseline of the next row) | {alone.EventsPerSecond:N0} | {alone.CpuMicrosPerEvent:0.00} | {alone.CpuCoresBusy:0.00} |");
        if (r.WithShadow is { } w)
            b.AppendLine($"| deployment, champion with a shadow of the champion's cost (features computed once, both models scored, shadow predictions published) | {w.EventsPerSecond:N0} | {w.CpuMicrosPerEvent:0.00} | {w.CpuCoresBusy:0.00} |");
        b.AppendLine($"| **ratio processor ÷ passthrough** | **{r.ThroughputRatio:0.000}** | | |");
        if (r.Baseline is not null)
            b.AppendLine($"| **ratio processor ÷ hand-written baseline** | **{r.BaselineRatio:0.0}×** | | |");
        if (r.Stages.Count > 0)
        {
            b.AppendLine();
            b.AppendLine("Where the processor's time went during that run (its own /metrics; stages overlap, batches are pipelined):");
            b.AppendLine();
            b.AppendLine("| figure | value |");
            b.AppendLine("|---|---:|");
            foreach (var f in r.Stages) b.AppendLine($"| {f.Name} | {f.Value} |");
        }
        b.AppendLine();
        if (r.Search.Count > 0)
        {
            b.AppendLine("## Sustainable throughput (open loop)");
            b.AppendLine();
            b.AppendLine("The highest rate each consumer keeps up with while the load generator runs (Karimov et al., ICDE 2018). The generator is its own process " +
                         $"(`bench generate`), producing on a fixed schedule; every probe gets fresh topics and a freshly started consumer, warmed up by the first {OpenLoop.WarmUpSeconds} s of load. " +
                         $"A probe is sustained when the generator kept its schedule (≥ {OpenLoop.MinAchieved:P0} of the rate) and the backlog (input minus output high watermarks) " +
                         $"grew by at most {OpenLoop.MaxBacklogGrowthSeconds} s of input over the measured part and ends under {OpenLoop.MaxBacklogSeconds} s of input. " +
                         "Bisection between 20 % and 105 % of the backlog throughput. CPU: the consumer's over the measured part ÷ events produced in it.");
            b.AppendLine();
            b.AppendLine($"| | sustainable events/s |");
            b.AppendLine("|---|---:|");
            b.AppendLine($"| processor | {r.ProcessorSustainable:N0} |");
            b.AppendLine($"| passthrough | {r.PassthroughSustainable:N0} |");
            b.AppendLine($"| **ratio** | **{r.SustainableRatio:0.000}** |");
            b.AppendLine();
            b.AppendLine("| consumer | target events/s | generator achieved | backlog growth | backlog at the end | sustained | CPU-µs/event | cores busy | p99 ms |");
            b.AppendLine("|---|---:|---:|---:|---:|---|---:|---:|---:|");
            foreach (var l in r.Search)
                b.AppendLine($"| {l.Consumer} | {l.TargetRate:N0} | {l.AchievedRate:N0} | {l.BacklogGrowth:N0} ({F(l.BacklogGrowth / l.TargetRate, "0.00")} s) | {l.BacklogAtEnd:N0} ({F(l.BacklogAtEnd / l.TargetRate, "0.00")} s) | {(l.Sustained ? "yes" : "no")} | {F(l.CpuMicrosPerEvent, "0.00")} | {F(l.CpuCoresBusy, "0.00")} | {F(l.P99Ms, "0.0")} |");
            b.AppendLine();
        }
        b.AppendLine("## Event-to-prediction latency (open loop)");
        b.AppendLine();
        b.AppendLine($"Events are produced on a fixed schedule at a fraction of the processor's {(r.ProcessorSustainable > 0 ? "sustainable rate" : "backlog throughput")} by the generator process; latency is the time a reader in the bench process receives the prediction minus the event time, which the generator sets to the moment it produces the event (millisecond resolution, same clock). Each step runs on fresh topics with a freshly started processor (same settings, same Redis); the first {OpenLoop.WarmUpSeconds} s of event time are warm-up.");
        b.AppendLine();
        b.AppendLine("| load | target events/s | achieved | samples | missing | backlog at the end | p50 ms | p95 ms | p99 ms | max ms | CPU-µs/event |");
        b.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var l in r.Latency)
            b.AppendLine($"| {l.Fraction:P0} | {l.TargetRate:N0} | {l.AchievedRate:N0} | {l.Samples:N0} | {l.Missing:N0} | {l.BacklogAtEnd:N0} | {l.P50Ms:0.0} | {l.P95Ms:0.0} | {l.P99Ms:0.0} | {l.MaxMs:0.0} | {F(l.CpuMicrosPerEvent, "0.00")} |");
        if (r.Micro.Count > 0)
        {
            b.AppendLine();
            b.AppendLine("## Stages (BenchmarkDotNet, in process, MemoryDiagnoser)");
            b.AppendLine();
            b.AppendLine("Per event: an invocation handles a batch and BenchmarkDotNet divides by its size. Ratio: this row's time ÷ the baseline's (same parameters).");
            b.AppendLine();
            b.AppendLine("| stage | method | parameters | ns/event | B/event | ratio to baseline |");
            b.AppendLine("|---|---|---|---:|---:|---:|");
            foreach (var m in r.Micro)
                b.AppendLine($"| {m.Group} | {m.Method}{(m.Baseline ? " (baseline)" : "")} | {m.Parameters} | {F(m.NsPerEvent, "N1")} | {(m.AllocatedBytesPerEvent is { } a ? F(a, "0.##") : "–")} | {(m.RatioToBaseline is { } x ? F(x, "0.000") : "")} |");
        }
        return b.ToString();
    }

    private static string F(double value, string format) =>
        double.IsFinite(value) ? value.ToString(format, CultureInfo.InvariantCulture) : "n/a";
}
