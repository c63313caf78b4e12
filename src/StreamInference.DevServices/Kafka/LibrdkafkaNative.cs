using System.Reflection;
using System.Runtime.InteropServices;

namespace StreamInference.DevServices.Kafka;

/// <summary>
/// P/Invoke declarations for librdkafka's mock cluster (rdkafka_mock.h). They must bind to the very
/// same native library Confluent.Kafka loaded, so the resolver tries the same files in the same order:
/// the default build needs libsasl2.so.3, absent on bare Debian, and then the centos8 build is used.
/// </summary>
internal static partial class LibrdkafkaNative
{
    private const string Lib = "librdkafka";
    private static int _resolverSet;

    public static void EnsureResolver()
    {
        if (Interlocked.Exchange(ref _resolverSet, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(LibrdkafkaNative).Assembly, Resolve);
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Lib) return IntPtr.Zero;
        string[] candidates = OperatingSystem.IsLinux()
            ? ["librdkafka.so", "centos8-librdkafka.so", "alpine-librdkafka.so"]
            : OperatingSystem.IsMacOS() ? ["librdkafka.dylib"] : ["librdkafka.dll"];
        var rid = RuntimeInformation.ProcessArchitecture == Architecture.Arm64
            ? (OperatingSystem.IsLinux() ? "linux-arm64" : OperatingSystem.IsMacOS() ? "osx-arm64" : "win-arm64")
            : (OperatingSystem.IsLinux() ? "linux-x64" : OperatingSystem.IsMacOS() ? "osx-x64" : "win-x64");
        foreach (var dir in new[] { Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native"), AppContext.BaseDirectory })
        {
            foreach (var file in candidates)
            {
                var full = Path.Combine(dir, file);
                if (File.Exists(full) && NativeLibrary.TryLoad(full, out var handle)) return handle;
            }
        }
        return NativeLibrary.TryLoad(candidates[0], assembly, path, out var fallback) ? fallback : IntPtr.Zero;
    }

    public const int RD_KAFKA_PRODUCER = 0;

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial IntPtr rd_kafka_conf_new();

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rd_kafka_conf_set(IntPtr conf, string name, string value, byte[] errstr, nuint errstrSize);

    [LibraryImport(Lib)]
    public static partial IntPtr rd_kafka_new(int type, IntPtr conf, byte[] errstr, nuint errstrSize);

    [LibraryImport(Lib)]
    public static partial void rd_kafka_destroy(IntPtr rk);

    [LibraryImport(Lib)]
    public static partial IntPtr rd_kafka_mock_cluster_new(IntPtr rk, int brokerCount);

    [LibraryImport(Lib)]
    public static partial void rd_kafka_mock_cluster_destroy(IntPtr cluster);

    [LibraryImport(Lib)]
    public static partial IntPtr rd_kafka_mock_cluster_bootstraps(IntPtr cluster);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rd_kafka_mock_topic_create(IntPtr cluster, string topic, int partitions, int replicationFactor);

    [LibraryImport(Lib)]
    public static partial int rd_kafka_mock_broker_set_down(IntPtr cluster, int brokerId);

    [LibraryImport(Lib)]
    public static partial int rd_kafka_mock_broker_set_up(IntPtr cluster, int brokerId);

    [LibraryImport(Lib)]
    public static partial int rd_kafka_mock_broker_set_rtt(IntPtr cluster, int brokerId, int rttMs);

    [LibraryImport(Lib)]
    public static partial void rd_kafka_mock_push_request_errors_array(IntPtr cluster, short apiKey, nuint count, int[] errors);

    [LibraryImport(Lib)]
    public static partial IntPtr rd_kafka_err2str(int err);
}
