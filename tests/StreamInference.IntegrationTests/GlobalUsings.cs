// Namespaces most integration tests use.
global using System.Diagnostics;
global using Confluent.Kafka;
global using StackExchange.Redis;
global using StreamInference.Batch.Features;
global using StreamInference.Batch.History;
global using StreamInference.Batch.Synthetic;
global using StreamInference.Core.Features;
global using StreamInference.Core.Pipeline;
global using StreamInference.DevServices.Processes;
global using StreamInference.DevServices.Synthetic;
global using StreamInference.Infrastructure.Avro;
global using StreamInference.Infrastructure.Onnx;
global using StreamInference.Infrastructure.Processing;
global using Xunit.Abstractions;
global using AvroSchema = Avro.Schema;
