using System.Globalization;
using System.Text;
using Confluent.Kafka;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka.Commit;

namespace StreamInference.Infrastructure.Kafka;

/// <summary>
/// Produces a batch's predictions (keyed by entity, so per-key order holds downstream) and its dead
/// letters (original key, value and headers plus reason and source coordinates). One delivery
/// handler delegate per batch object, created once and reused: acknowledgements count down on the
/// batch, which then completes its offsets.
/// </summary>
public sealed class KafkaPredictionSink : IPredictionSink
{
    public const string ReasonHeader = "streaminference.dlq.reason";
    public const string DetailHeader = "streaminference.dlq.detail";
    public const string SourceTopicHeader = "streaminference.source.topic";
    public const string SourcePartitionHeader = "streaminference.source.partition";
    public const string SourceOffsetHeader = "streaminference.source.offset";
    public const string SourceTimestampHeader = "streaminference.source.timestamp";
    /// <summary>Set (to the original size) when a dead letter's value was dropped because it exceeded message.max.bytes.</summary>
    public const string ValueDroppedHeader = "streaminference.dlq.value-dropped";

    private readonly IProducer<byte[], byte[]> _producer;
    private readonly string _outputTopic;
    private readonly string _deadLetterTopic;
    private readonly PredictionWriter _writer;
    private readonly PredictionKeyWriter _keys;
    private readonly Dictionary<string, byte[]> _reasonBytes = [];
    private readonly Dictionary<string, byte[]> _topicBytes = [];

    private readonly ICommitStrategy _commit;
    private readonly ShadowPublishing? _shadows;
    private bool[] _skip = [];
    // Called by the score stage only (one thread).
    private readonly Dictionary<EventBatch, Action<DeliveryReport<byte[], byte[]>>> _handlers = new(ReferenceEqualityComparer.Instance);

    /// <param name="commit">Each batch is produced inside its publish scope (the open transaction, in exactly-once mode).</param>
    public KafkaPredictionSink(IProducer<byte[], byte[]> producer, string outputTopic, string deadLetterTopic, PredictionWriter writer,
        ICommitStrategy commit, PredictionKeyWriter? keys = null, ShadowPublishing? shadows = null)
    {
        _shadows = shadows;
        _keys = keys ?? PredictionKeyWriter.Utf8;
        _producer = producer;
        _commit = commit;
        _outputTopic = outputTopic;
        _deadLetterTopic = deadLetterTopic;
        _writer = writer;
        foreach (var r in DeadLetterReasons.All) _reasonBytes[r] = Encoding.UTF8.GetBytes(r);
    }

    public void Publish(EventBatch batch)
    {
        // Batches circulate through a fixed pool: one handler per batch, made on first sight.
        if (!_handlers.TryGetValue(batch, out var handler))
        {
            var completion = batch.Completion;
            handler = report => completion.Acknowledge(!report.Error.IsError, report.Error.IsError ? $"{report.Error.Code}: {report.Error.Reason}" : null);
            _handlers[batch] = handler;
        }
        using var scope = _commit.BeginPublish();
        // Records of partitions revoked meanwhile belong to their new owner, which consumes them from
        // the committed offset: publishing them here would only duplicate its output.
        if (_skip.Length < batch.Count) _skip = new bool[batch.Capacity];
        var messages = 0;
        for (var row = 0; row < batch.Count; row++)
        {
            _skip[row] = batch.Records[row].Partition.IsRevoked;
            if (!_skip[row]) messages++;
        }
        batch.Completion.Expect(messages);
        var k = 0;
        for (var row = 0; row < batch.Count; row++)
        {
            Message<byte[], byte[]> message;
            var skip = _skip[row];
            string topic;
            if (batch.DeadLetterReasons[row] is { } reason)
            {
                if (skip) continue;
                topic = _deadLetterTopic;
                message = DeadLetter(batch, row, reason);
            }
            else
            {
                topic = _outputTopic;
                var scoreRow = k++;
                if (skip) continue;
                message = new Message<byte[], byte[]>
                {
                    Key = _keys.Write(batch.EntityKeys[row]!),
                    Value = _writer.Write(batch, row, scoreRow),
                };
            }
            Produce(topic, message, handler);
        }
        // Shadow predictions after the champion's, to their own topic, on the telemetry producer: outside the batch's
        // acknowledgement and transaction, so nothing about a shadow can hold back or fail the champion's output.
        _shadows?.Publish(batch, _skip);
    }

    private Message<byte[], byte[]> DeadLetter(EventBatch batch, int row, string reason)
    {
        ref readonly var r = ref batch.Records[row];
        var headers = new Headers
        {
            { ReasonHeader, _reasonBytes.TryGetValue(reason, out var rb) ? rb : Encoding.UTF8.GetBytes(reason) },
            { DetailHeader, Encoding.UTF8.GetBytes(Truncate(batch.DeadLetterDetails[row] ?? "", 1024)) },
            { SourceTopicHeader, TopicBytes(r.Partition.Topic) },
            { SourcePartitionHeader, Encoding.ASCII.GetBytes(r.Partition.Partition.ToString(CultureInfo.InvariantCulture)) },
            { SourceOffsetHeader, Encoding.ASCII.GetBytes(r.Offset.ToString(CultureInfo.InvariantCulture)) },
            { SourceTimestampHeader, Encoding.ASCII.GetBytes(r.TimestampMs.ToString(CultureInfo.InvariantCulture)) },
        };
        if (r.Headers is { } original)
        {
            foreach (var (key, value) in original) headers.Add(key, value);
        }
        return new Message<byte[], byte[]> { Key = r.Key!, Value = r.Value!, Headers = headers };
    }

    private byte[] TopicBytes(string topic)
    {
        if (!_topicBytes.TryGetValue(topic, out var bytes)) _topicBytes[topic] = bytes = Encoding.UTF8.GetBytes(topic);
        return bytes;
    }

    private static string Truncate(string s, int max) => s.Length <= max ? s : s[..max];

    private void Produce(string topic, Message<byte[], byte[]> message, Action<DeliveryReport<byte[], byte[]>> handler)
    {
        try
        {
            ProducerQueue.Produce(_producer, topic, message, handler);
        }
        catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.MsgSizeTooLarge && topic == _deadLetterTopic && message.Value is { Length: > 0 } value)
        {
            // The record plus its dead-letter headers is over message.max.bytes: keep the coordinates
            // and the reason, drop the payload (it is still in the input topic at the source offset).
            message = new Message<byte[], byte[]> { Key = message.Key, Value = null!, Headers = message.Headers };
            message.Headers.Add(ValueDroppedHeader, Encoding.ASCII.GetBytes(value.Length.ToString(CultureInfo.InvariantCulture)));
            Produce(topic, message, handler);
        }
        catch (ProduceException<byte[], byte[]> e)
        {
            // E.g. a transaction in an abortable state: the batch cannot be published by this producer.
            var why = $"Producing to {topic} failed: {e.Error.Code}: {e.Error.Reason}";
            _commit.PublishFailed(why);
            var permanent = e.Error.IsFatal || e.Error.Code is ErrorCode.Local_Fatal or ErrorCode.MsgSizeTooLarge or ErrorCode.Local_InvalidArg;
            throw new PipelineFatalException(why, e, restartable: !permanent);
        }
    }
}

/// <summary>
/// Publishes a deployment's shadow predictions: one topic for all shadows, on the telemetry producer (never in the
/// output transaction, never counted in a batch's acknowledgement). Shadow output is best effort: a failed or refused
/// message is counted (<see cref="Failed"/>), and the champion's predictions are unaffected. The shadows are those of
/// the deployment that scored the batch (a promote changes them between batches).
/// </summary>
public sealed class ShadowPublishing
{
    private readonly IProducer<byte[], byte[]> _producer;
    private readonly Func<IReadOnlyList<Deployment.Challenger>> _shadows;
    private readonly Func<ModelIdentity, PredictionWriter> _writerFor;
    private readonly PredictionKeyWriter _keys;
    private readonly Action<string, bool>? _outcome;
    // By name@version: a model reloaded by a later deployment version writes the same records.
    private readonly Dictionary<string, (PredictionWriter Writer, Action<DeliveryReport<byte[], byte[]>> Handler, Action<bool> Outcome)> _byModel = [];
    private long _delivered, _failed;

    /// <param name="shadows">The shadows of the deployment that scored the batch being published.</param>
    /// <param name="writerFor">A prediction writer for a shadow model (made once per model).</param>
    /// <param name="outcome">Called per shadow message with the model and whether it was delivered (metrics).</param>
    public ShadowPublishing(string topic, IProducer<byte[], byte[]> producer, Func<IReadOnlyList<Deployment.Challenger>> shadows,
        Func<ModelIdentity, PredictionWriter> writerFor, PredictionKeyWriter keys, Action<string, bool>? outcome = null)
    {
        Topic = topic;
        _producer = producer;
        _shadows = shadows;
        _writerFor = writerFor;
        _keys = keys;
        _outcome = outcome;
    }

    public string Topic { get; }
    public long Delivered => Interlocked.Read(ref _delivered);
    public long Failed => Interlocked.Read(ref _failed);

    private (PredictionWriter Writer, Action<DeliveryReport<byte[], byte[]>> Handler, Action<bool> Outcome) For(ModelIdentity model)
    {
        var name = model.ToString();
        if (_byModel.TryGetValue(name, out var made)) return made;
        Action<bool> outcome = delivered =>
        {
            if (delivered) Interlocked.Increment(ref _delivered);
            else Interlocked.Increment(ref _failed);
            _outcome?.Invoke(name, delivered);
        };
        return _byModel[name] = (_writerFor(model), report => outcome(!report.Error.IsError), outcome);
    }

    public void Publish(EventBatch batch, bool[] skip)
    {
        foreach (var shadow in _shadows())
        {
            var model = shadow.Model;
            if (!model.Valid) continue;
            var (writer, handler, outcome) = For(model.Identity);
            var k = 0;
            for (var row = 0; row < batch.Count; row++)
            {
                if (batch.DeadLetterReasons[row] is not null) continue;
                var slot = model.Slots[k++];
                if (skip[row] || slot < 0) continue;
                try
                {
                    ProducerQueue.Produce(_producer, Topic, new Message<byte[], byte[]>
                    {
                        Key = _keys.Write(batch.EntityKeys[row]!),
                        Value = writer.Write(batch, row, model.Identity, model.ScoreRow(slot), model.Labels[slot], ServingArm.Shadow),
                    }, handler);
                }
                catch (Exception e) when (e is KafkaException or InvalidOperationException or ArgumentException or InvalidDataException)
                {
                    outcome(false);
                }
            }
        }
    }
}
