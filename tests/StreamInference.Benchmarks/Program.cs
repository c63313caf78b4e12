using BenchmarkDotNet.Running;
using StreamInference.Benchmarks;

// `suite [--quick] [--redis <configuration>] [--artifacts <dir>] [--only batcher,onnx-score,...]`: the in-process
// micro suite, as the CLI's bench command runs it, then its table. Anything else goes to BenchmarkSwitcher
// (out of process), e.g. --filter '*'.
if (args.Length > 0 && args[0] == "suite")
{
    var quick = args.Contains("--quick");
    var redis = ValueOf("--redis") ?? BenchmarkEnvironment.RedisConfiguration;
    var artifacts = ValueOf("--artifacts") ?? Path.Combine(Directory.GetCurrentDirectory(), "BenchmarkDotNet.Artifacts");
    var only = ValueOf("--only")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    var benchmarks = only is null ? MicroSuite.Benchmarks : MicroSuite.Select(only);
    var results = MicroSuite.Run(new MicroSuiteOptions(redis, artifacts, quick), Console.Out, benchmarks);
    MicroSuite.WriteTable(results, Console.Out);
    return results.Any(r => double.IsNaN(r.NsPerEvent)) ? 1 : 0;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;

string? ValueOf(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
