using StreamInference.Batch.Profiling;
using StreamInference.Batch.Training;
using StreamInference.Core.Drift;

namespace StreamInference.IntegrationTests;

/// <summary>history → backfill (Parquet) → train (ONNX + manifest) → profile, as the CLI runs them.</summary>
public sealed class BatchPathTests() : TempDirectoryTest("si-batch-")
{
    private static readonly FeaturePlan Plan = ServicesFixture.CardPaymentsPlan;

    [Fact]
    public async Task Backfill_Train_Profile_ProducesAModelClearlyBetterThanChance_ThatTheProcessorAccepts()
    {
        var history = SyntheticHistory.Generate(Plan, new HistoryOptions { Events = 60_000, Span = TimeSpan.FromDays(30), Seed = 9 });
        var historyPath = Path.Combine(TempDir, "history.parquet");
        await ParquetHistory.WriteAsync(historyPath, history);
        var reread = await ParquetHistory.ReadAsync(historyPath, Plan);
        Assert.Equal(history.Count, reread.Count);

        var order = reread.EventTimeOrder();
        var rows = PointInTimeFeatures.Compute(reread, LookupTimeline.Compute(reread, reread.MaxTimeMs + 1, order), eventTimeOrder: order);
        var setPath = Path.Combine(TempDir, "training.parquet");
        await TrainingSet.WriteAsync(setPath, reread, rows);
        var set = await TrainingSet.ReadAsync(setPath);
        Assert.Equal(Plan.Features.Select(f => f.Name), set.FeatureNames);
        Assert.Equal(rows.Values, set.Features);

        var report = Trainer.Train(set, Plan, new TrainingTarget(Path.Combine(TempDir, "models"), "fraud-gbm", "7"));
        var modelDir = report.ModelDirectory;
        Assert.True(report.TestAuc > 0.8, $"held-out AUC {report.TestAuc}");
        Assert.True(report.TestRows > 5_000);

        using var scorer = new OnnxScorer(modelDir, Plan);   // the processor's loader, skew guard included
        Assert.Equal(report.TestAuc, scorer.Manifest.Metrics!["test_auc"], 4);
        var batch = new EventBatch(Plan, 1000, scorer.OutputWidth);
        set.Features.AsSpan(0, 1000 * set.Width).CopyTo(batch.Features);
        batch.OkCount = 1000;
        scorer.Score(batch);
        var scores = Enumerable.Range(0, 1000).Select(k => batch.ScoreRow(k)[0]).ToArray();
        var profile = ProfileBuilder.Build(set, Plan, scores, scorer.ModelName, scorer.ModelVersion);
        var path = Path.Combine(modelDir, ReferenceProfile.FileName);
        File.WriteAllText(path, profile.ToJson());
        var loaded = ReferenceProfile.Load(path);

        Assert.Equal(Plan.FeatureCount, loaded.Features.Count);
        var onlineShare = loaded.Features.Single(f => f.Name == "is_online");
        Assert.Equal("categorical", onlineShare.Kind);
        Assert.Equal(1.0, onlineShare.BinShares.Sum(), 6);
        var amount = loaded.Features.Single(f => f.Name == "log_amount");
        Assert.Equal("continuous", amount.Kind);
        Assert.Equal(9, amount.BinEdges.Length);
        Assert.All(amount.BinShares, s => Assert.InRange(s, 0.08, 0.12));   // quantile bins hold about a tenth each
        Assert.True(loaded.Features.Single(f => f.Name == "merchant_fraud_rate_30d").MissingRate > 0); // the first day has no snapshot yet
        Assert.Equal(1000, loaded.Prediction.Count);
    }
}
