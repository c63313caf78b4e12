using System.CommandLine;
using StreamInference.Cli;

var root = new RootCommand("StreamInference: Kafka events in, ONNX Runtime predictions out. Avro (Confluent wire format), Redis features, micro-batching.")
{
    ServeCommand.Create(),
    EvaluateCommand.Create(),
    DevUpAndHistory(),
    DevCommands.Demo(),
    DevCommands.Produce(),
    BatchCommands.Backfill(),
    BatchCommands.Materialize(),
    BatchCommands.Train(),
    BatchCommands.Profile(),
    BatchCommands.Drift(),
    BatchCommands.Replay(),
    BenchCommand.Create(),
    HealthCommand.Create(),
    ModelCommands.Create(),
};
var parse = root.Parse(args);
// SIGTERM/Ctrl+C: `serve` leaves signals to its host, which drains, commits and closes within its own
// configured bound (Pipeline:ShutdownTimeoutMs and the transaction timeout). System.CommandLine would
// otherwise end the process with 143 two seconds after the signal, mid-drain. Other commands get the
// cancellation token and a generous bound to checkpoint and close.
var invocation = new InvocationConfiguration
{
    ProcessTerminationTimeout = parse.CommandResult.Command.Name == "serve" ? null : TimeSpan.FromSeconds(60),
};
return await parse.InvokeAsync(invocation);

static Command DevUpAndHistory()
{
    var dev = DevCommands.DevUp();
    dev.Subcommands.Add(BatchCommands.History());
    return dev;
}
