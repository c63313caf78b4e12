using Avro.Generic;
using Avro.IO;
using StreamInference.Infrastructure.Avro;

namespace StreamInference.Core.Tests;

public class PredictionWriterTests
{
    /// <summary>One scored row: two scores (primary index 1), a label, event time and scored-at.</summary>
    private static EventBatch ScoredBatch(string? label = "1")
    {
        var plan = FeatureSetLoader.LoadFile(Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml"));
        var batch = new EventBatch(plan, 4, 2);
        var p = new PartitionOffsets("payments", 5);
        batch.Records[0] = new InputRecord(p, p.Track(77), 77, null, null, 0, null);
        batch.Count = 1;
        batch.CollectCleanRows();
        batch.EventIds[0] = "évt-1";
        batch.EntityKeys[0] = "card-9";
        batch.EventTimesMs[0] = 1_700_000_000_123;
        batch.ScoredAtMs = 1_700_000_000_456;
        batch.DefaultedCounts[0] = 2;
        batch.Scores[0] = 0.25;
        batch.Scores[1] = 0.75;
        batch.Labels[0] = label;
        return batch;
    }

    [Fact]
    public void Writer_OutputDecodesWithApacheAvro_AgainstPredictionSchema()
    {
        var bytes = new PredictionWriter(11, "m", "3", primaryScoreIndex: 1).Write(ScoredBatch(), 0, 0);

        Assert.Equal(WireHeaderStatus.Ok, ConfluentWireFormat.TryReadHeader(bytes, out var id));
        Assert.Equal(11, id);
        var reader = new GenericDatumReader<GenericRecord>(PredictionWriter.Schema, PredictionWriter.Schema);
        using var ms = new MemoryStream(bytes, 5, bytes.Length - 5);
        var decoder = new BinaryDecoder(ms);
        var r = reader.Read(null!, decoder);
        Assert.Equal(ms.Length, ms.Position); // nothing left over
        Assert.Equal("évt-1", r["event_id"]);
        Assert.Equal("card-9", r["entity_key"]);
        Assert.Equal("m", r["model_name"]);
        Assert.Equal("3", r["model_version"]);
        Assert.Equal(0.75, r["score"]);
        Assert.Equal(new object[] { 0.25, 0.75 }, ((object[])r["scores"]));
        Assert.Equal("1", r["label"]);
        Assert.Equal(2, r["features_defaulted"]);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_123).UtcDateTime, r["event_time"]);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_456).UtcDateTime, r["scored_at"]);
        Assert.Equal(5, r["source_partition"]);
        Assert.Equal(77L, r["source_offset"]);
    }

    [Theory]
    [InlineData("1", false)]
    [InlineData(null, true)]
    public void Reader_ReadsBackWhatTheWriterWrote(string? label, bool featureStoreUnavailable)
    {
        var batch = ScoredBatch(label);
        batch.FeatureStoreUnavailable = featureStoreUnavailable;

        var bytes = new PredictionWriter(11, "m", "3", primaryScoreIndex: 1).Write(batch, 0, 0);
        var read = PredictionReader.Read(bytes);

        Assert.Equal(11, read.SchemaId);
        Assert.Equal("évt-1", read.EventId);
        Assert.Equal("card-9", read.EntityKey);
        Assert.Equal("m", read.ModelName);
        Assert.Equal("3", read.ModelVersion);
        Assert.Equal(0.75, read.Score);
        Assert.Equal([0.25, 0.75], read.Scores);
        Assert.Equal(label, read.Label);
        Assert.Equal(2, read.FeaturesDefaulted);
        Assert.Equal(1_700_000_000_123, read.EventTimeMs);
        Assert.Equal(1_700_000_000_456, read.ScoredAtMs);
        Assert.Equal(5, read.SourcePartition);
        Assert.Equal(77L, read.SourceOffset);
        Assert.Equal(featureStoreUnavailable ? PredictionWriter.DegradedFeatureStore : null, read.Degraded);
        Assert.Equal(read.EventTimeMs, PredictionReader.ReadEventTimeMs(bytes));
    }

    [Fact]
    public void Reader_RejectsTrailingBytesAndAWrongMagicByte()
    {
        var bytes = new PredictionWriter(11, "m", "3", primaryScoreIndex: 1).Write(ScoredBatch(), 0, 0);
        Assert.Throws<InvalidDataException>(() => PredictionReader.Read([.. bytes, 0]));
        Assert.Throws<InvalidDataException>(() => PredictionReader.Read([1, .. bytes.AsSpan(1)]));     // wrong magic byte
    }
}
