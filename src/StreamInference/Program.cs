using System.CommandLine;
using StreamInference.Cli;

var root = new RootCommand("StreamInference: Kafka events in, ONNX Runtime predictions out. Avro (Confluent wire format), Redis features, micro-batching.")
{
    ServeCommand.Create(),
    DevCommands.DevUp(),
    DevCommands.Demo(),
    DevCommands.Produce(),
    DevCommands.Train(),
};
return await root.Parse(args).InvokeAsync();
