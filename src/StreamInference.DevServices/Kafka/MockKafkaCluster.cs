using System.Runtime.InteropServices;
using System.Text;

namespace StreamInference.DevServices.Kafka;

/// <summary>
/// An in-process Kafka-protocol cluster: librdkafka's mock cluster, driven through its C API. Real TCP
/// brokers that any Kafka client can use (produce, fetch, consumer groups, idempotence, transactions),
/// with topics of chosen partition counts and fault controls for tests. Not for production: each
/// partition keeps only a few megabytes and there is no persistence.
/// </summary>
public sealed class MockKafkaCluster : IDisposable
{
    private IntPtr _handle;   // the rd_kafka_t that owns the cluster's threads
    private IntPtr _cluster;

    public MockKafkaCluster(int brokers = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(brokers, 1);
        // Make sure Confluent.Kafka has loaded its native library first, so both bind the same file.
        Confluent.Kafka.Library.Load();
        LibrdkafkaNative.EnsureResolver();
        var err = new byte[512];
        var conf = LibrdkafkaNative.rd_kafka_conf_new();
        // Quiet: the mock's own client logs nothing useful for users.
        LibrdkafkaNative.rd_kafka_conf_set(conf, "log_level", "3", err, (nuint)err.Length);
        _handle = LibrdkafkaNative.rd_kafka_new(LibrdkafkaNative.RD_KAFKA_PRODUCER, conf, err, (nuint)err.Length);
        if (_handle == IntPtr.Zero)
            throw new InvalidOperationException($"rd_kafka_new failed: {Encoding.UTF8.GetString(err).TrimEnd('\0')}");
        _cluster = LibrdkafkaNative.rd_kafka_mock_cluster_new(_handle, brokers);
        if (_cluster == IntPtr.Zero)
        {
            LibrdkafkaNative.rd_kafka_destroy(_handle);
            throw new InvalidOperationException("rd_kafka_mock_cluster_new failed.");
        }
        BrokerCount = brokers;
        BootstrapServers = Marshal.PtrToStringUTF8(LibrdkafkaNative.rd_kafka_mock_cluster_bootstraps(_cluster))
                           ?? throw new InvalidOperationException("The mock cluster reported no bootstrap servers.");
    }

    /// <summary>Comma-separated host:port list of the brokers.</summary>
    public string BootstrapServers { get; }
    public int BrokerCount { get; }

    public void CreateTopic(string topic, int partitions, int replicationFactor = 1)
    {
        Check(LibrdkafkaNative.rd_kafka_mock_topic_create(Cluster, topic, partitions, Math.Min(replicationFactor, BrokerCount)),
            $"create topic '{topic}'");
    }

    /// <summary>Broker ids are 1..BrokerCount.</summary>
    public void SetBrokerDown(int brokerId) => Check(LibrdkafkaNative.rd_kafka_mock_broker_set_down(Cluster, brokerId), $"set broker {brokerId} down");
    public void SetBrokerUp(int brokerId) => Check(LibrdkafkaNative.rd_kafka_mock_broker_set_up(Cluster, brokerId), $"set broker {brokerId} up");
    public void SetBrokerRtt(int brokerId, TimeSpan rtt) => Check(LibrdkafkaNative.rd_kafka_mock_broker_set_rtt(Cluster, brokerId, (int)rtt.TotalMilliseconds), $"set broker {brokerId} RTT");

    /// <summary>The next requests of <paramref name="apiKey"/> (e.g. 0 = Produce) fail with these librdkafka error codes, in order.</summary>
    public void PushRequestErrors(short apiKey, params Confluent.Kafka.ErrorCode[] errors)
    {
        var codes = errors.Select(e => (int)e).ToArray();
        LibrdkafkaNative.rd_kafka_mock_push_request_errors_array(Cluster, apiKey, (nuint)codes.Length, codes);
    }

    private IntPtr Cluster => _cluster != IntPtr.Zero ? _cluster : throw new ObjectDisposedException(nameof(MockKafkaCluster));

    private static void Check(int err, string what)
    {
        if (err != 0)
            throw new InvalidOperationException($"Mock cluster could not {what}: {Marshal.PtrToStringUTF8(LibrdkafkaNative.rd_kafka_err2str(err))} ({err}).");
    }

    public void Dispose()
    {
        if (_cluster != IntPtr.Zero)
        {
            LibrdkafkaNative.rd_kafka_mock_cluster_destroy(_cluster);
            _cluster = IntPtr.Zero;
        }
        if (_handle != IntPtr.Zero)
        {
            LibrdkafkaNative.rd_kafka_destroy(_handle);
            _handle = IntPtr.Zero;
        }
    }
}
