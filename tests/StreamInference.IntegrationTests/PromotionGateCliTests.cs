using StreamInference.Core.Deployment;
using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Evaluation;

namespace StreamInference.IntegrationTests;

/// <summary>
/// <c>model promote --if-better</c> (issue 19): the gate reads the labelled events both models predicted from the live
/// evaluation's windows in Redis, refuses a challenger that is not significantly better (exit 3, deployment unchanged)
/// and promotes one that is.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class PromotionGateCliTests(ServicesFixture services, ITestOutputHelper output) : TempDirectoryTest("streaminference-gate-")
{
    [Fact]
    public async Task PromoteIfBetter_RefusesAnEqualChallenger_PromotesABetterOne()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var (champion, equal, better, unseen) = ($"gate-{run}-champion", $"gate-{run}-equal", $"gate-{run}-better", $"gate-{run}-unseen");
        var repository = Path.Combine(TempDir, "models");
        var source = Path.Combine(AppContext.BaseDirectory, "models", "fraud-gbm", "1");
        foreach (var name in new[] { champion, equal, better, unseen }) ModelRepository.CopyVersion(source, repository, name);
        var file = Path.Combine(repository, DeploymentSpec.FileName);
        new DeploymentSpec(1, new ModelRef(champion, "1"), [new ShadowSpec(new ModelRef(equal, "1"), 1), new ShadowSpec(new ModelRef(better, "1"), 1)], null, null).Save(file);

        // 6,000 labelled events (8 % positive) scored by all three, as the evaluation writes them: the champion at AUC
        // about 0.80, an equal challenger (same separation, its own noise), a better one (about 0.86).
        using var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis);
        var group = $"gate-{run}-evaluate";
        var windows = new RedisEvaluationWindows(redis.GetDatabase(), EvaluationNamespace.Of(group), windowMs: 60_000, horizonMs: 3_600_000, retentionMs: 3_600_000);
        var random = new Random(1901);
        var start = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        double Score(bool y, double separation) => 1 / (1 + Math.Exp(-(Normal(random) + (y ? separation : 0) - 2)));
        for (var i = 0; i < 6_000; i++)
        {
            var y = random.NextDouble() < 0.08;
            foreach (var (model, separation) in new[] { (champion, 1.2), (equal, 1.2), (better, 1.55) })
            {
                var p = new ScoredEvent($"{run}-e{i}", $"card-{i % 300}", $"{model}@1", model == champion ? "champion" : "shadow", Score(y, separation), start + i * 1_000L, 1);
                await windows.PredictedAsync(p);
                await windows.LabelledAsync(new LabelledPrediction(p, y, p.EventTimeMs + 1_000));
            }
        }

        var environment = new Dictionary<string, string>();
        string[] Promote(string model) => ["model", "promote", $"{model}@1", "--repository", repository, "--if-better", "--redis", services.Redis, "--evaluation-group", group,
            "--features", Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml")];
        var refused = await TestCli.RunAsync(Promote(equal), environment);
        output.WriteLine($"equal challenger: exit {refused.Code}: {refused.Stdout.Trim()} {refused.Stderr.Trim()}");
        Assert.Equal(3, refused.Code);
        Assert.Contains("not significantly better", refused.Stdout);
        Assert.Contains("on 6000 events", refused.Stdout);
        Assert.Equal(1, DeploymentSpec.LoadFile(file).Version);   // unchanged

        var promoted = await TestCli.RunAsync(Promote(better), environment);
        output.WriteLine($"better challenger: exit {promoted.Code}: {promoted.Stdout.Trim()} {promoted.Stderr.Trim()}");
        Assert.True(promoted.Code == 0, promoted.Stderr);
        Assert.Contains("significantly better", promoted.Stdout);
        var after = DeploymentSpec.LoadFile(file);
        Assert.Equal(2, after.Version);
        Assert.Equal(new ModelRef(better, "1"), after.Champion);

        // Without labelled events in common (a model the evaluation never saw), the gate refuses too.
        var notSeen = await TestCli.RunAsync(Promote(unseen), environment);
        Assert.Equal(3, notSeen.Code);
        Assert.Contains("too few labelled events", notSeen.Stdout);
    }

    private static double Normal(Random random) => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
