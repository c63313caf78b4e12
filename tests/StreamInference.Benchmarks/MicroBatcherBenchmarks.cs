using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using StreamInference.Core.Batching;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;

namespace StreamInference.Benchmarks;

/// <summary>
/// Records through the input channel into full batches of 256, as the batch stage takes them under load:
/// a writer loop puts one batch worth of records into the channel, then the batcher drains them (no
/// await, no deadline timer). The baseline drains the same channel with a plain TryRead loop.
/// Results are per record.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("batcher")]
public class MicroBatcherBenchmarks
{
    private const int BatchSize = 256;
    private const int Batches = 16;
    private const int Records = BatchSize * Batches;

    /// <summary>Bounded as in the pipeline (capacity 4096, Wait when full), or unbounded.</summary>
    [Params(true, false)]
    public bool Bounded { get; set; }

    private Channel<InputRecord> _channel = null!;
    private MicroBatcher<InputRecord> _batcher = null!;
    private readonly InputRecord[] _buffer = new InputRecord[BatchSize];
    private InputRecord _record;

    [GlobalSetup]
    public void Setup()
    {
        // The pipeline's input channel: one writer (the consume thread), one reader (the batch stage).
        _channel = Bounded
            ? Channel.CreateBounded<InputRecord>(new BoundedChannelOptions(4096) { SingleWriter = true, SingleReader = true, FullMode = BoundedChannelFullMode.Wait })
            : Channel.CreateUnbounded<InputRecord>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });
        _batcher = new MicroBatcher<InputRecord>(_channel.Reader, BatchSize, TimeSpan.FromMilliseconds(5));
        var partition = new PartitionOffsets("payments", 0);
        _record = new InputRecord(partition, 0, 0, null, [0, 0, 0, 0, 1], 0, null);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Records)]
    public int TryReadLoop()
    {
        var writer = _channel.Writer;
        var reader = _channel.Reader;
        var total = 0;
        for (var b = 0; b < Batches; b++)
        {
            for (var i = 0; i < BatchSize; i++) writer.TryWrite(_record);
            var n = 0;
            while (n < BatchSize && reader.TryRead(out var item)) _buffer[n++] = item;
            total += n;
        }
        return total;
    }

    [Benchmark(OperationsPerInvoke = Records)]
    public int FillAsync()
    {
        var writer = _channel.Writer;
        var total = 0;
        for (var b = 0; b < Batches; b++)
        {
            for (var i = 0; i < BatchSize; i++) writer.TryWrite(_record);
            var fill = _batcher.FillAsync(_buffer, CancellationToken.None);
            // A full batch completes synchronously; the fallback only runs if that ever regresses.
            total += fill.IsCompletedSuccessfully ? fill.Result : fill.AsTask().GetAwaiter().GetResult();
        }
        return total;
    }
}
