using StreamInference.Core.Diagnostics;
using StreamInference.Core.Features;

namespace StreamInference.Core.Tests;

public class FeatureTests
{
    private const string Valid = """
        featureSet: demo
        version: 2
        event: { idField: id, entityKeyField: user, timeField: ts }
        lookups:
          - { name: profile, entityField: user, fields: [avg, count] }
        features:
          - { name: amount_log, event: amount, transform: log1p, default: -1 }
          - { name: hour, event: ts, transform: hour_of_day }
          - { name: dow, event: ts, transform: day_of_week }
          - { name: online, event: channel, transform: equals(ONLINE) }
          - { name: avg_clipped, lookup: profile.avg, transform: "clip(0,10)", default: 5 }
          - { name: count, lookup: profile.count, default: 7 }
        """;

    [Fact]
    public void Loader_CompilesSlotsAndOrder()
    {
        var plan = FeatureSetLoader.Parse(Valid);
        Assert.Equal("demo", plan.Name);
        Assert.Equal(2, plan.Version);
        Assert.Equal(["amount_log", "hour", "dow", "online", "avg_clipped", "count"], plan.Features.Select(f => f.Name));
        Assert.Equal(["amount", "ts"], plan.NumericFields.Select(f => f.Name));
        Assert.Equal(["channel", "user"], plan.TextFields.Select(f => f.Name).Order());
        Assert.Equal(2, plan.LookupValueCount);
    }

    [Fact]
    public void Assembler_AppliesTransforms_AndDefaultsForMissingValues()
    {
        var plan = FeatureSetLoader.Parse(Valid);
        var assembler = new FeatureVectorAssembler(plan);
        var numerics = new double[plan.NumericFields.Count];
        var texts = new string?[plan.TextFields.Count];
        var lookups = new double[plan.LookupValueCount];
        var slot = (string n) => plan.NumericFields.Single(f => f.Name == n).Slot;
        numerics[slot("amount")] = Math.E - 1;
        // 2026-03-05 was a Thursday; 13:30 UTC
        numerics[slot("ts")] = new DateTimeOffset(2026, 3, 5, 13, 30, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        texts[plan.TextFields.Single(f => f.Name == "channel").Slot] = "ONLINE";
        lookups[0] = 25;           // clipped to 10
        lookups[1] = double.NaN;   // missing → default 7
        var vector = new float[plan.FeatureCount];
        var defaulted = new long[plan.FeatureCount];

        var n = assembler.Assemble(numerics, texts, lookups, vector, defaulted);

        Assert.Equal(1, n);
        Assert.Equal([1f, 13f, 3f, 1f, 10f, 7f], vector);
        Assert.Equal([0L, 0, 0, 0, 0, 1], defaulted);

        numerics[slot("amount")] = double.NaN;   // null amount → default -1
        texts[plan.TextFields.Single(f => f.Name == "channel").Slot] = null;
        assembler.Assemble(numerics, texts, lookups, vector, defaulted);
        Assert.Equal(-1f, vector[0]);
        Assert.Equal(0f, vector[3]); // equals() of a missing value takes its default (0)
    }

    [Theory]
    [InlineData("transform: sqrt", "unknown transform 'sqrt'")]
    [InlineData("lookup: nope.avg", "lookup 'nope.avg'")]
    [InlineData("transform: \"clip(5,1)\"", "clip(MIN,MAX)")]
    public void Loader_ErrorsNameTheFeature(string line, string expected)
    {
        var yaml = $$"""
            featureSet: demo
            version: 1
            event: { idField: id, entityKeyField: user, timeField: ts }
            lookups:
              - { name: profile, entityField: user, fields: [avg] }
            features:
              - name: broken
                event: amount
                {{line}}
            """;
        if (line.StartsWith("lookup")) yaml = yaml.Replace("    event: amount\n", "");
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse(yaml, "demo.yaml"));
        Assert.Contains("'broken'", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Contains("demo.yaml", e.Message);
    }

    [Fact]
    public void Loader_ReportsYamlSyntaxErrors_WithLine()
    {
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse("featureSet: x\nversion: [1\n", "bad.yaml"));
        Assert.Contains("bad.yaml: line", e.Message);
    }

    [Fact]
    public void LatencyRecorder_PercentilesWithinBucketError()
    {
        var r = new LatencyRecorder();
        for (var i = 1; i <= 10_000; i++) r.RecordMicroseconds(i);
        Assert.InRange(r.PercentileMicroseconds(0.5), 5000 * 0.94, 5000 * 1.07);
        Assert.InRange(r.PercentileMicroseconds(0.99), 9900 * 0.94, 9900 * 1.07);
        Assert.Equal(10_000, r.Count);
    }
}
