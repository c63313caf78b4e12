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
        var topics = await services.CreateTopicsAsync(6);
        var options = services.ProcessorOptions(topics);
        options.Kafka.Delivery = delivery;
        options.Kafka.TransactionalId = "faults-" + options.Kafka.GroupId;
        // A request lost to a broker going down is retried after socket.timeout.ms (default 60 s).
        options.Kafka.Producer.SocketTimeoutMs = 10_000;
        options.Kafka.TransactionTimeoutMs = 10_000;

        using var registry = services.RegistryClient();
        using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);
        string? wedged = null;
        var sw = Stopwatch.StartNew();
        await using var processor = await ProcessorHarness.StartAsync(options, output, onWedged: why => wedged = why, supervised: true);

        var producing = Task.Run(() => services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = 9000, Rate = 600, BadRate = 0.01, Seed = 5150 }));
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
        // socket.timeout.ms); TransactionalCommit reports that as wedged and the processor exits for a
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
        await processor.WaitUntilAsync(() => audit.Predicted + audit.DeadLettered >= produced.Produced || wedged is not null, TimeSpan.FromSeconds(150) - sw.Elapsed);
        Assert.True(wedged is null, $"the transactional producer wedged: {wedged}");
        timeline.Add($"{sw.Elapsed.TotalSeconds:N1}s done (accounted {audit.Predicted + audit.DeadLettered} of {produced.Produced})");
        output.WriteLine(string.Join(Environment.NewLine, timeline));
        processor.AssertRunning("the processor stopped");
        await processor.StopAsync();
        await Task.Delay(500);
        await auditing.StopAsync();

        var unaccounted = audit.UnaccountedRecords(produced.Records);
        var lost = unaccounted.Count;
        // Which records, where: enough to tell a record the cluster lost from one the processor skipped.
        foreach (var r in unaccounted.Take(20)) output.WriteLine($"unaccounted: partition {r.Partition} offset {r.Offset} event {r.EventId ?? "(malformed)"}");
        var restarts = processor.MetricFactory.CreateCounter("streaminference_restarts_total", "").Value;
        output.WriteLine($"{delivery}: produced {produced.Produced}, predicted {audit.Predicted}, dead-lettered {audit.DeadLettered}, lost {lost}, " +
                         $"duplicates {audit.Duplicates}, in-process restarts {restarts}");
        Assert.Equal(0, lost);
        if (delivery == DeliveryGuarantee.ExactlyOnce) Assert.Equal(0, audit.Duplicates);
    }
}
