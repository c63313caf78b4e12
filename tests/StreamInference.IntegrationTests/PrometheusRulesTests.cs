namespace StreamInference.IntegrationTests;

/// <summary>
/// The alert rules checked by Prometheus' own tool (issue 20): <c>promtool check rules</c> parses every expression, and
/// <c>promtool test rules</c> runs deploy/prometheus/alerts.test.yml, where every alert has a series history that must
/// fire it (labels and annotations included) and one that must not. Both checks are shown able to fail: a syntax error
/// and a label matcher that selects nothing each make them fail. Without promtool (apt-get install prometheus) the
/// test says so and checks nothing; CI installs it.
/// </summary>
public sealed class PrometheusRulesTests(ITestOutputHelper output) : TempDirectoryTest("streaminference-promtool-")
{
    private static readonly string Root = TestCli.Root;

    [Fact]
    public async Task AlertRules_ParseAndPassTheirUnitTests_AndTheChecksCanFail()
    {
        if (!TestCli.OnPath("promtool"))
        {
            output.WriteLine("promtool is not installed (apt-get install prometheus): the alert rules were not checked by Prometheus");
            return;
        }
        var rules = Path.Combine(Root, "deploy", "prometheus", "alerts.yml");
        var tests = Path.Combine(Root, "deploy", "prometheus", "alerts.test.yml");

        var check = await PromtoolAsync("check", "rules", rules);
        Assert.True(check.Code == 0, check.Output);
        var test = await PromtoolAsync("test", "rules", tests);
        Assert.True(test.Code == 0, test.Output);
        output.WriteLine(check.Output.Trim());

        // Every alert of the rule file has a firing and a non-firing case.
        var alerts = System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(rules), @"- alert: (\w+)").Select(m => m.Groups[1].Value).ToList();
        var cases = System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(tests), @"alertname: (\w+)\s+exp_alerts:(\s*\[\])?")
            .Select(m => (Alert: m.Groups[1].Value, Fires: !m.Groups[2].Success)).ToList();
        foreach (var alert in alerts)
        {
            Assert.True(cases.Any(c => c.Alert == alert && c.Fires), $"{alert}: no case that must fire it");
            Assert.True(cases.Any(c => c.Alert == alert && !c.Fires), $"{alert}: no case that must not fire it");
        }
        output.WriteLine($"{alerts.Count} alerts, {cases.Count} cases ({cases.Count(c => c.Fires)} firing, {cases.Count(c => !c.Fires)} not)");

        // The checks can fail: a syntax error is refused by check rules ...
        var text = File.ReadAllText(rules);
        var broken = Path.Combine(TempDir, "broken-syntax.yml");
        File.WriteAllText(broken, Replace(text, "sum by (topic) (streaminference_consumer_lag) > 10000", "sum by (topic (streaminference_consumer_lag) > 10000"));
        var brokenCheck = await PromtoolAsync("check", "rules", broken);
        Assert.NotEqual(0, brokenCheck.Code);
        // ... and a label matcher that selects nothing fails the unit tests (the alert never fires).
        File.WriteAllText(Path.Combine(TempDir, "alerts.yml"), Replace(text, "reason=\"model-error\"", "reason=\"model_error\""));
        File.Copy(tests, Path.Combine(TempDir, "alerts.test.yml"));
        var wrongMatcher = await PromtoolAsync("test", "rules", Path.Combine(TempDir, "alerts.test.yml"));
        Assert.NotEqual(0, wrongMatcher.Code);
        Assert.Contains("StreamInferenceScoringErrors", wrongMatcher.Output);
        output.WriteLine($"a syntax error: check rules exit {brokenCheck.Code}; reason=\"model_error\": test rules exit {wrongMatcher.Code}");
    }

    private static string Replace(string text, string what, string with)
    {
        Assert.Contains(what, text);
        return text.Replace(what, with, StringComparison.Ordinal);
    }

    private static async Task<(int Code, string Output)> PromtoolAsync(params string[] args)
    {
        var (code, stdout, stderr) = await TestCli.RunProgramAsync("promtool", args, new Dictionary<string, string>());
        return (code, stdout + stderr);
    }

}
