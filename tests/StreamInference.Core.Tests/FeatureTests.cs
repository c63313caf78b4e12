using StreamInference.Core.Diagnostics;

namespace StreamInference.Core.Tests;

public class FeatureTests
{
    private const string Valid = """
        featureSet: demo
        version: 2
        event: { idField: id, entityKeyField: user, timeField: ts }
        lookups:
          - name: profile
            entityField: user
            ttl: 1d
            refresh: 1h
            fields:
              - { name: avg, function: mean, of: amount, window: 7d, bucket: 1h }
              - { name: count, function: count, window: 1d }
        features:
          - { name: amount_log, event: amount, transform: log1p, default: -1 }
          - { name: hour, event: ts, transform: hour_of_day, default: 12 }
          - { name: dow, event: ts, transform: day_of_week, default: 0 }
          - { name: online, event: channel, transform: equals(ONLINE), default: 0 }
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

        var n = assembler.Assemble(numerics, texts, [], lookups, vector, defaulted);

        Assert.Equal(1, n);
        Assert.Equal([1f, 13f, 3f, 1f, 10f, 7f], vector);
        Assert.Equal([0L, 0, 0, 0, 0, 1], defaulted);

        numerics[slot("amount")] = double.NaN;   // null amount → default -1
        texts[plan.TextFields.Single(f => f.Name == "channel").Slot] = null;
        assembler.Assemble(numerics, texts, [], lookups, vector, defaulted);
        Assert.Equal(-1f, vector[0]);
        Assert.Equal(0f, vector[3]); // equals() of a missing value takes its default (0)
    }

    private const string Header = """
        featureSet: demo
        version: 1
        event: { idField: id, entityKeyField: user, timeField: ts }
        lookups:
          - name: profile
            entityField: user
            ttl: 1d
            refresh: 1h
            fields: [{ name: avg, function: mean, of: amount, window: 1d }]
        features:
          - { name: ok, event: amount, default: 0 }

        """;

    // Acceptance: bad definitions fail with messages naming the problem, the feature and its line.
    [Theory]
    [InlineData("  - { name: broken, event: amount, transform: sqrt, default: 0 }", "unknown transform 'sqrt'")]
    [InlineData("  - { name: broken, window: { function: count }, default: 0 }", "window needs a 'size'")]
    [InlineData("  - { name: broken, event: amount }", "'default' is required")]
    [InlineData("  - { name: broken, lookup: nope.avg, default: 0 }", "lookup 'nope.avg'")]
    [InlineData("  - { name: broken, event: amount, transform: \"clip(5,1)\", default: 5 }", "clip(MIN,MAX)")]
    [InlineData("  - { name: broken, window: { function: median, of: amount, size: 1h }, default: 0 }", "count, sum, mean, min, max")]
    [InlineData("  - { name: broken, window: { function: sum, size: 1h }, default: 0 }", "needs 'of'")]
    [InlineData("  - { name: broken, window: { function: count, size: 90s, bucket: 1m }, default: 0 }", "not a whole number of 1m buckets")]
    [InlineData("  - { name: broken, window: { function: count, size: 1h, entity: merchant_id }, default: 0 }", "windows are kept per 'user'")]
    [InlineData("  - { name: broken, event: channel, transform: equals(X), default: 0.5 }", "must be 0 or 1")]
    [InlineData("  - { name: broken, event: ts, transform: hour_of_day, default: 24 }", "hour 0..23")]
    public void Loader_RejectsBadDefinitions_NamingFeatureAndLine(string feature, string expected)
    {
        var yaml = Header + feature + "\n";
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse(yaml, "demo.yaml"));
        Assert.Contains(expected, e.Message);
        Assert.Contains("feature 'broken'", e.Message);
        Assert.Contains("demo.yaml:12:", e.Message); // the line of the offending list item
    }

    [Fact]
    public void Loader_RejectsDuplicateFeatureNames()
    {
        var yaml = Header + "  - { name: ok, event: amount, transform: log1p, default: 0 }\n";
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse(yaml, "demo.yaml"));
        Assert.Contains("demo.yaml:12: feature 'ok': duplicate feature name", e.Message);
    }

    [Fact]
    public void Loader_ReportsEveryProblem_AndLookupErrors()
    {
        var yaml = Header.Replace("ttl: 1d", "ttl: soon") + "  - { name: a, event: amount }\n  - { name: b, event: amount, transform: nope, default: 1 }\n";
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse(yaml, "demo.yaml"));
        Assert.Contains("lookup 'profile': 'ttl' is required", e.Message);
        Assert.Contains("demo.yaml:12: feature 'a': 'default' is required", e.Message);
        Assert.Contains("demo.yaml:13: feature 'b': unknown transform 'nope'", e.Message);
    }

    [Theory]
    [InlineData("  - { name: k, event: user, default: 0 }", "event field 'user' is used as Numeric")]
    [InlineData("  - { name: label, event: amount, default: 0 }", "the name is reserved")]
    [InlineData("  - { name: _x, event: amount, default: 0 }", "the name is reserved")]
    [InlineData("  -", "must not contain empty items")]
    public void Loader_RejectsDefinitionsThatWouldBreakLater(string feature, string expected)
    {
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse(Header + feature + "\n", "demo.yaml"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Loader_EmptyFeatureList_IsAClearError()
    {
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse(
            "featureSet: x\nversion: 1\nevent: { idField: id, entityKeyField: user, timeField: ts }\nfeatures:\n", "empty.yaml"));
        Assert.Contains("'features' must list at least one feature", e.Message);
    }

    [Fact]
    public void Loader_ReportsYamlSyntaxErrors_WithLine()
    {
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse("featureSet: x\nversion: [1\n", "bad.yaml"));
        Assert.Matches(@"bad\.yaml:\d+:\d+: ", e.Message);
    }

    [Fact]
    public void Loader_RejectsUnknownKeys()
    {
        var e = Assert.Throws<FeatureDefinitionException>(() => FeatureSetLoader.Parse(Header + "  - { name: x, event: amount, defualt: 1 }\n", "typo.yaml"));
        Assert.Contains("typo.yaml:12:", e.Message);
        Assert.Contains("defualt", e.Message);
    }

    [Fact]
    public void Transforms_BucketizeIndexAndLog()
    {
        var plan = FeatureSetLoader.Parse("""
            featureSet: t
            version: 1
            event: { idField: id, entityKeyField: user, timeField: ts }
            features:
              - { name: band, event: amount, transform: "bucketize(10,100)", default: 0 }
              - { name: channel, event: channel, transform: "index(POS,ONLINE,ATM)", default: -1 }
              - { name: ln, event: amount, transform: log, default: 0 }
            """);
        var assembler = new FeatureVectorAssembler(plan);
        var numerics = new double[plan.NumericFields.Count];
        var texts = new string?[plan.TextFields.Count];
        var channel = plan.TextSlot("channel");
        var vector = new float[3];
        var defaulted = new long[3];
        float[] Run(double amount, string? ch)
        {
            numerics[plan.NumericSlot("amount")] = amount;
            texts[channel] = ch;
            assembler.Assemble(numerics, texts, [], [], vector, defaulted);
            return [.. vector];
        }
        Assert.Equal([0f, 2f, 0f], Run(1, "ATM"));
        Assert.Equal([1f, 0f, (float)Math.Log(10)], Run(10, "POS"));
        Assert.Equal([2f, 1f, (float)Math.Log(500)], Run(500, "ONLINE"));
        Assert.Equal([0f, -1f, 0f], Run(-3, "CRYPTO")); // unknown category and log of a negative take defaults
        Assert.Equal([0L, 1, 1], defaulted);
    }

    [Theory]
    [InlineData("500ms", 500L)]
    [InlineData("30s", 30_000L)]
    [InlineData("5m", 300_000L)]
    [InlineData("2h", 7_200_000L)]
    [InlineData("30d", 2_592_000_000L)]
    public void Durations_Parse(string text, long millis)
    {
        Assert.True(Durations.TryParseMillis(text, out var parsed));
        Assert.Equal(millis, parsed);
        Assert.Equal(text, Durations.Format(millis));
    }

    [Theory]
    [InlineData("")]
    [InlineData("5")]
    [InlineData("m")]
    [InlineData("1w")]
    [InlineData("-5m")]
    public void Durations_RejectNonsense(string text) => Assert.False(Durations.TryParseMillis(text, out _));

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
