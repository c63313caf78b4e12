using System.CommandLine;
using StreamInference.Cli;

var root = new RootCommand("StreamInference: Kafka events in, ONNX Runtime predictions out. Avro (Confluent wire format), Redis features, micro-batching.")
{
    ServeCommand.Create(),
    DevUpAndHistory(),
    DevCommands.Demo(),
    DevCommands.Produce(),
    BatchCommands.Backfill(),
    BatchCommands.Materialize(),
    BatchCommands.Train(),
    BatchCommands.Profile(),
    BatchCommands.Drift(),
    BatchCommands.Replay(),
};
return await root.Parse(args).InvokeAsync();

static Command DevUpAndHistory()
{
    var dev = DevCommands.DevUp();
    dev.Subcommands.Add(BatchCommands.History());
    return dev;
}
