using Confluent.Kafka;
using Polly;
using StreamInference.Core.Resilience;

namespace StreamInference.Infrastructure.Kafka;

/// <summary>
/// <c>Produce</c> that waits out a full local queue (<c>Local_QueueFull</c>: the broker is slower than
/// we are) with <see cref="Backoffs.ProducerQueueFull"/> while the client's background poll thread serves
/// delivery reports (calling <c>Poll</c> ourselves is not allowed with it). The first attempt is a plain
/// call: the retry pipeline runs only when the queue is full.
/// </summary>
public static class ProducerQueue
{
    private static readonly ResiliencePipeline WhenFull = Policies.Retry(Backoffs.ProducerQueueFull,
        static e => e is ProduceException<byte[], byte[]> { Error.Code: ErrorCode.Local_QueueFull });

    public static void Produce(IProducer<byte[], byte[]> producer, string topic, Message<byte[], byte[]> message,
        Action<DeliveryReport<byte[], byte[]>>? handler)
    {
        try
        {
            producer.Produce(topic, message, handler);
        }
        catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
        {
            WhenFull.Execute(static s => s.Producer.Produce(s.Topic, s.Message, s.Handler), (Producer: producer, Topic: topic, Message: message, Handler: handler));
        }
    }

    /// <summary>As <see cref="Produce"/>, waiting asynchronously while the queue is full (for async producers of load).</summary>
    public static ValueTask ProduceAsync(IProducer<byte[], byte[]> producer, string topic, Message<byte[], byte[]> message,
        Action<DeliveryReport<byte[], byte[]>>? handler, CancellationToken ct)
    {
        try
        {
            producer.Produce(topic, message, handler);
            return ValueTask.CompletedTask;
        }
        catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
        {
            return WhenFull.ExecuteAsync(static (s, _) =>
            {
                s.Producer.Produce(s.Topic, s.Message, s.Handler);
                return ValueTask.CompletedTask;
            }, (Producer: producer, Topic: topic, Message: message, Handler: handler), ct);
        }
    }
}
