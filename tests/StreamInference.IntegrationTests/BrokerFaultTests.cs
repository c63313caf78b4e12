using System.Diagnostics;
using Confluent.Kafka;
using Prometheus;
using StreamInference.DevServices.Synthetic;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Processing;
using Xunit.Abstractions;
using AvroSchema = Avro.Schema;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Broker faults during a run, through the embedded cluster's fault controls: a broker down and up,
/// the whole cluster down and up, injected produce / fetch / commit / transaction errors and added
/// latency. Nothing is lost and processing resumes by itself (in exactly-once mode: no duplicates
/// either for a read_committed reader).
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class BrokerFaultTests(ServicesFixture services, ITestOutputHelper output)
{
    private const short Produce = 0, Fetch = 1, OffsetCommit = 8, AddPartitionsToTxn = 24;
    private static readonly Avro.RecordSchema Writer = ServicesFixture.PaymentEventSchema;

    [Theory]
    [InlineData(DeliveryGuarantee.AtLeastOnce)]
    [InlineData(DeliveryGuarantee.ExactlyOnce)]
    public async Task BrokersDownAndUp_InjectedErrors_NothingLost_ProcessingResumesByItself(DeliveryGuarantee delivery)
    {
        if (services.Mock is not { } cluster)
        {
            output.WriteLine("needs the embedded cluster's fault controls (KAFKA_BOOTSTRAP_SERVERS points at a real broker)");
            return;
        }
        var input = await services.CreateTopicAsync("payments", 6);
        var predictions = await services.CreateTopicAsync("predictions", 6);
        var dlq = await services.CreateTopicAsync("dlq", 1);
        var group = "g-" + Guid.NewGuid().ToString("N");
        var options = services.ProcessorOptions(input, predictions, dlq, group);
        options.Kafka.Delivery = delivery;
        options.Kafka.TransactionalId = "faults-" + group;
        // A request lost to a broker going down is retried after socket.timeout.ms (default 60 s).
        options.Kafka.Producer.SocketTimeoutMs = 10_000;
        options.Kafka.TransactionTimeoutMs = 10_000;

        using var registry = new SchemaRegistryClient(new SchemaRegistryOptions { Url = services.SchemaRegistryUrl });
        using var audit = new PredictionAudit(services.BootstrapServers, registry, predictions, dlq);
        using var stopAudit = new CancellationTokenSource();
        var auditing = audit.RunAsync(stopAudit.Token);
        var metricFactory = Metrics.WithCustomRegistry(Metrics.NewCustomRegistry());
        string? wedged = null;
        var processor = new StreamProcessor(options, new TestLoggerFactory(output), metricFactory) { DecorateCommit = services.DecorateCommit, OnWedged = why => wedged = why };
        using var stop = new CancellationTokenSource();
        var run = processor.RunSupervisedAsync(stop.Token);
        var sw = Stopwatch.StartNew();
        while (processor.AssignedPartitions == 0 && !run.IsCompleted && sw.Elapsed < TimeSpan.FromSeconds(60)) await Task.Delay(50);
        if (run.IsCompleted) await run;

        var producing = Task.Run(() => SyntheticPaymentProducer.ProduceAsync(services.BootstrapServers, registry, Writer,
            new ProduceOptions { Topic = input, Events = 9000, Rate = 600, BadRate = 0.01, Seed = 5150 }, null, CancellationToken.None));
        var timeline = new List<string>();
        async Task Step(string what, Action act, TimeSpan then)
        {
            act();
            timeline.Add($"{sw.Elapsed.TotalSeconds:N1}s {what} (accounted {audit.Predicted + audit.DeadLettered})");
            await Task.Delay(then);
        }
        await Task.Delay(2000);
        if (delivery == DeliveryGuarantee.AtLeastOnce)
        {
            await Step("broker 1 down", () => cluster.SetBrokerDown(1), TimeSpan.FromSeconds(4));
            await Step("broker 1 up", () => cluster.SetBrokerUp(1), TimeSpan.FromSeconds(2));
            await Step("all brokers down", () => { for (var b = 1; b <= cluster.BrokerCount; b++) cluster.SetBrokerDown(b); }, TimeSpan.FromSeconds(3));
            await Step("all brokers up", () => { for (var b = 1; b <= cluster.BrokerCount; b++) cluster.SetBrokerUp(b); }, TimeSpan.FromSeconds(2));
        }
        // Exactly-once: no broker down/up on the embedded cluster. After a broker went down and up,
        // librdkafka's send_offsets_to_transaction against it was seen never to return (not even after
        // socket.timeout.ms); KafkaTransactions reports that as wedged and the processor exits for a
        // restart. Injected request errors and latency are handled in-process.
        await Step("produce/fetch/commit errors injected", () =>
        {
            cluster.PushRequestErrors(Produce, ErrorCode.NotLeaderForPartition, ErrorCode.RequestTimedOut, ErrorCode.NotEnoughReplicas, ErrorCode.LeaderNotAvailable);
            cluster.PushRequestErrors(Fetch, ErrorCode.NotLeaderForPartition, ErrorCode.UnknownTopicOrPart, ErrorCode.RequestTimedOut);
            cluster.PushRequestErrors(OffsetCommit, ErrorCode.GroupCoordinatorNotAvailable, ErrorCode.NotCoordinatorForGroup, ErrorCode.RequestTimedOut);
            if (delivery == DeliveryGuarantee.ExactlyOnce)
                cluster.PushRequestErrors(AddPartitionsToTxn, ErrorCode.ConcurrentTransactions, ErrorCode.ConcurrentTransactions);
        }, TimeSpan.FromSeconds(2));
        await Step("200 ms round trips on every broker", () => { for (var b = 1; b <= cluster.BrokerCount; b++) cluster.SetBrokerRtt(b, TimeSpan.FromMilliseconds(200)); }, TimeSpan.FromSeconds(2));
        await Step("round trips back to normal", () => { for (var b = 1; b <= cluster.BrokerCount; b++) cluster.SetBrokerRtt(b, TimeSpan.Zero); }, TimeSpan.Zero);

        var produced = await producing;
        while (audit.Predicted + audit.DeadLettered < produced.Produced && sw.Elapsed < TimeSpan.FromSeconds(150) && !run.IsCompleted && wedged is null) await Task.Delay(100);
        Assert.True(wedged is null, $"the transactional producer wedged: {wedged}");
        timeline.Add($"{sw.Elapsed.TotalSeconds:N1}s done (accounted {audit.Predicted + audit.DeadLettered} of {produced.Produced})");
        output.WriteLine(string.Join(Environment.NewLine, timeline));
        Assert.False(run.IsCompleted, "the processor stopped");
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(60));
        await Task.Delay(500);
        await stopAudit.CancelAsync();
        await auditing;

        var lost = audit.Unaccounted(produced.Records);
        var restarts = metricFactory.CreateCounter("streaminference_restarts_total", "").Value;
        output.WriteLine($"{delivery}: produced {produced.Produced}, predicted {audit.Predicted}, dead-lettered {audit.DeadLettered}, lost {lost}, " +
                         $"duplicates {audit.Duplicates}, in-process restarts {restarts}");
        Assert.Equal(0, lost);
        if (delivery == DeliveryGuarantee.ExactlyOnce) Assert.Equal(0, audit.Duplicates);
    }
}
