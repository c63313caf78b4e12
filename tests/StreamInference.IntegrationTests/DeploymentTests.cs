using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace StreamInference.IntegrationTests;

/// <summary>
/// What can be checked of the deployment files without a Docker engine or a cluster: the compose file
/// and the Kubernetes manifests parse and hang together, every setting they give the processor is one
/// the real CLI accepts, every metric the dashboard and the alert rules query is one a running
/// processor exports, and the Dockerfiles build the README's project from paths that exist.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed partial class DeploymentTests(ServicesFixture services, ITestOutputHelper output)
{
    private static readonly string Root = TestCli.Root;
    private static readonly string[] WellKnownVariables = TestCli.WellKnownVariables;

    // ---- 1. compose + Kubernetes: they parse, and every setting they set is a processor setting

    [Fact]
    public async Task ComposeAndKubernetesManifests_Parse_AndEverySettingTheyGiveTheProcessorIsAccepted()
    {
        var compose = Map(LoadYaml("docker-compose.yml").Single());
        var svc = Map(compose["services"]);
        foreach (var name in new[] { "kafka", "kafka-init", "schema-registry", "redis", "processor", "evaluate", "producer", "prometheus", "grafana" })
            Assert.True(svc.ContainsKey(name), $"docker-compose.yml has no service '{name}'");

        // Kafka in KRaft mode (no ZooKeeper anywhere), the producer behind a profile.
        var kafkaEnv = Environment(Map(svc["kafka"]));
        Assert.Contains("controller", kafkaEnv["KAFKA_PROCESS_ROLES"]);
        Assert.DoesNotContain(svc.Keys, k => k.Contains("zookeeper", StringComparison.OrdinalIgnoreCase));
        Assert.Contains("producer", List(Map(svc["producer"])["profiles"]).Select(Text));

        // Files mounted into Prometheus and Grafana exist; the processor is built from deploy/Dockerfile.
        foreach (var service in new[] { "prometheus", "grafana" })
        {
            foreach (var volume in List(Map(svc[service])["volumes"]).Select(Text))
            {
                var host = volume.Split(':')[0];
                Assert.True(File.Exists(Path.Combine(Root, host)) || Directory.Exists(Path.Combine(Root, host)), $"{service} mounts '{host}', which does not exist");
            }
        }
        var build = Map(Map(svc["processor"])["build"]);
        Assert.True(File.Exists(Path.Combine(Root, Text(build["context"]), Text(build["dockerfile"]))));

        // The topics kafka-init creates are the ones the processor uses, and the input's partition
        // count bounds the replicas KEDA may start.
        var init = string.Join(" ", List(Map(svc["kafka-init"])["command"]).Select(Text));
        var specs = TopicLoop().Match(init);
        Assert.True(specs.Success, "kafka-init: no `for spec in <topic>:<partitions> …; do` loop");
        var topics = specs.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(t => t.Split(':'))
            .ToDictionary(t => t[0], t => int.Parse(t[1], CultureInfo.InvariantCulture));
        var processorEnv = Environment(Map(svc["processor"]));
        foreach (var key in new[] { "InputTopic", "OutputTopic", "DeadLetterTopic" })
            Assert.True(topics.ContainsKey(processorEnv[$"STREAMINFERENCE__Kafka__{key}"]), $"kafka-init does not create Kafka:{key}");
        Assert.True(topics.ContainsKey(processorEnv["STREAMINFERENCE__Drift__Topic"]));

        // The CLI commands compose runs exist and take the options given.
        foreach (var service in new[] { "processor", "evaluate", "producer" })
            await AssertCommandAcceptsOptionsAsync(List(Map(svc[service])["command"]).Select(Text).ToList());

        // Kubernetes: every file of the base parses; the objects refer to each other correctly.
        var k8s = Path.Combine("deploy", "k8s", "base");
        var kustomization = Map(LoadYaml(Path.Combine(k8s, "kustomization.yaml")).Single());
        var objects = List(kustomization["resources"]).Select(Text).SelectMany(f => LoadYaml(Path.Combine(k8s, f))).Select(Map).ToList();
        var secret = Map(LoadYaml(Path.Combine(k8s, "secret.example.yaml")).Single());
        Assert.Equal(Text(kustomization["namespace"]), Text(Map(secret["metadata"])["namespace"]));
        Dictionary<string, object> Kind(string kind) => Assert.Single(objects, o => Text(o["kind"]) == kind);
        var deployment = Assert.Single(objects, o => Text(o["kind"]) == "Deployment" && Name(o) == "streaminference");
        var configMap = Kind("ConfigMap");
        var metricsService = Kind("Service");
        var pdb = Kind("PodDisruptionBudget");
        var scaledObject = Kind("ScaledObject");
        Kind("Namespace");
        Kind("ServiceAccount");
        Assert.Equal("Secret", Text(secret["kind"]));

        var spec = Map(deployment["spec"]);
        var podLabels = Labels(Map(Map(Map(spec["template"])["metadata"])["labels"]));
        AssertSelects(Labels(Map(Map(spec["selector"])["matchLabels"])), podLabels, "Deployment selector");
        AssertSelects(Labels(Map(Map(metricsService["spec"])["selector"])), podLabels, "Service selector");
        AssertSelects(Labels(Map(Map(Map(pdb["spec"])["selector"])["matchLabels"])), podLabels, "PodDisruptionBudget selector");

        var podSpec = Map(Map(spec["template"])["spec"]);
        var container = Map(Assert.Single(List(podSpec["containers"])));
        var envFrom = List(container["envFrom"]).Select(Map).ToList();
        Assert.Contains(envFrom, e => e.TryGetValue("configMapRef", out var r) && Text(Map(r)["name"]) == Name(configMap));
        Assert.Contains(envFrom, e => e.TryGetValue("secretRef", out var r) && Text(Map(r)["name"]) == Name(secret));
        Assert.Equal("true", Text(Map(podSpec["securityContext"])["runAsNonRoot"]));
        Assert.True(Map(container["resources"]).ContainsKey("requests"), "the processor container must request resources");
        var settings = Data(configMap, "data").Concat(Data(secret, "stringData")).ToDictionary();
        var port = settings["STREAMINFERENCE__Http__Port"];
        Assert.Contains(List(container["ports"]).Select(Map), p => Text(p["containerPort"]) == port);

        var scaler = Map(Assert.Single(List(Map(scaledObject["spec"])["triggers"])));
        var scalerMeta = Map(scaler["metadata"]);
        Assert.Equal("kafka", Text(scaler["type"]));
        Assert.Equal(Name(deployment), Text(Map(Map(scaledObject["spec"])["scaleTargetRef"])["name"]));
        Assert.Equal(settings["STREAMINFERENCE__Kafka__GroupId"], Text(scalerMeta["consumerGroup"]));
        Assert.Equal(settings["STREAMINFERENCE__Kafka__InputTopic"], Text(scalerMeta["topic"]));
        Assert.Equal("false", Text(scalerMeta["allowIdleConsumers"]));
        Assert.True(int.Parse(Text(Map(scaledObject["spec"])["maxReplicaCount"]), CultureInfo.InvariantCulture) <= topics[settings["STREAMINFERENCE__Kafka__InputTopic"]],
            "KEDA may start more replicas than the input topic has partitions");

        // The evaluation's Deployment: `evaluate`, the same settings, probed on /healthz, its pods none of the processor's selectors pick.
        var evaluate = Assert.Single(objects, o => Text(o["kind"]) == "Deployment" && Name(o) == "streaminference-evaluate");
        var evaluateSpec = Map(evaluate["spec"]);
        var evaluateLabels = Labels(Map(Map(Map(evaluateSpec["template"])["metadata"])["labels"]));
        AssertSelects(Labels(Map(Map(evaluateSpec["selector"])["matchLabels"])), evaluateLabels, "evaluate Deployment selector");
        Assert.False(Labels(Map(Map(metricsService["spec"])["selector"])).All(l => evaluateLabels.Contains(l)), "the processor's Service selects the evaluate pods");
        var evaluateContainer = Map(Assert.Single(List(Map(Map(evaluateSpec["template"])["spec"])["containers"])));
        Assert.Equal(["evaluate"], List(evaluateContainer["args"]).Select(Text));
        Assert.Equal(envFrom.Count, List(evaluateContainer["envFrom"]).Count);
        Assert.Equal("/healthz", Text(Map(Map(evaluateContainer["livenessProbe"])["httpGet"])["path"]));
        var (evaluateCode, _, evaluateError) = await TestCli.RunAsync(["evaluate", "--print-config"], settings);
        Assert.True(evaluateCode == 0, $"deploy/k8s: evaluate --print-config exited {evaluateCode}: {evaluateError}");
        var composeEvaluate = Environment(Map(svc["evaluate"]));
        (evaluateCode, _, evaluateError) = await TestCli.RunAsync(["evaluate", "--print-config"], composeEvaluate);
        Assert.True(evaluateCode == 0, $"docker-compose.yml evaluate: evaluate --print-config exited {evaluateCode}: {evaluateError}");
        Assert.True(topics.ContainsKey(composeEvaluate["STREAMINFERENCE__Evaluation__LabelsTopic"]), "kafka-init does not create the labels topic");

        // The variants set the image the base's container names, and are not inside the base (kustomize refuses that).
        var baseImage = Text(container["image"]);
        Assert.False(Map(deployment["spec"]).ContainsKey("replicas"), "the Deployment sets replicas, which KEDA's autoscaler owns");
        foreach (var variant in new[] { Path.Combine("deploy", "k8s"), Path.Combine("deploy", "k8s", "gpu") })
        {
            var variantFile = Map(LoadYaml(Path.Combine(variant, "kustomization.yaml")).Single());
            Assert.Contains(List(variantFile["resources"]).Select(Text), r => Path.GetFullPath(Path.Combine(Root, variant, r)) == Path.GetFullPath(Path.Combine(Root, k8s)));
            Assert.Equal(baseImage, Text(Map(Assert.Single(List(variantFile["images"])))["name"]));
        }
        await AssertKustomizeRendersAsync(Name(configMap));

        // The GPU overlay: GPU nodes, a GPU per pod, the CUDA device.
        var gpu = Path.Combine("deploy", "k8s", "gpu");
        var overlay = Map(LoadYaml(Path.Combine(gpu, "kustomization.yaml")).Single());
        var patches = List(overlay["patches"]).Select(p => Map(LoadYaml(Path.Combine(gpu, Text(Map(p)["path"]))).Single())).ToList();
        var gpuPod = Map(Map(Map(patches.Single(p => Text(p["kind"]) == "Deployment")["spec"])["template"])["spec"]);
        Assert.True(Map(gpuPod["nodeSelector"]).Count > 0, "the GPU variant must select GPU nodes");
        var gpuContainer = Map(Assert.Single(List(gpuPod["containers"])));
        Assert.Equal("1", Text(Map(Map(gpuContainer["resources"])["limits"])["nvidia.com/gpu"]));
        var gpuEnv = List(gpuContainer["env"]).Select(Map).ToDictionary(e => Text(e["name"]), e => Text(e["value"]));
        Assert.Equal("cuda", gpuEnv["STREAMINFERENCE__Model__Device"]);

        // Every setting, as the process gets it, through the real CLI.
        await AssertAcceptedAsync("docker-compose.yml processor", processorEnv);
        // The producer (`produce`) reads only the well-known variables, and says so in its help.
        var producerHelp = (await TestCli.RunAsync(["produce", "--help"], new Dictionary<string, string>())).Stdout;
        foreach (var name in Environment(Map(svc["producer"])).Keys)
        {
            Assert.Contains(name, WellKnownVariables);
            Assert.Contains("env " + name, producerHelp);
        }
        await AssertAcceptedAsync("deploy/k8s (ConfigMap + Secret)", settings);
        await AssertAcceptedAsync("deploy/k8s/gpu", settings.Concat(gpuEnv).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Last().Value));

        // The check can fail: a misspelled key is refused, naming the setting meant.
        var (code, _, error) = await TestCli.RunAsync(["serve", "--print-config"], new Dictionary<string, string> { ["STREAMINFERENCE__Pipeline__MaxBatchSze"] = "512" });
        Assert.Equal(2, code);
        Assert.Contains("did you mean Pipeline:MaxBatchSize", error);
    }

    /// <summary>
    /// Renders both variants with kustomize (kubectl's), where installed: every object lands in the
    /// namespace, each variant runs its own image, the GPU patch merges into the base's container.
    /// </summary>
    private async Task AssertKustomizeRendersAsync(string configMapName)
    {
        if (!TestCli.OnPath("kubectl"))
        {
            output.WriteLine("kubectl is not installed: the kustomizations were parsed, not rendered");
            return;
        }
        foreach (var variant in new[] { Path.Combine("deploy", "k8s"), Path.Combine("deploy", "k8s", "gpu") })
        {
            var (code, rendered, error) = await TestCli.RunProgramAsync("kubectl", ["kustomize", Path.Combine(Root, variant)], new Dictionary<string, string>());
            Assert.True(code == 0, $"kubectl kustomize {variant}: {error}");
            var objects = LoadYamlText(rendered, variant).Select(Map).ToList();
            foreach (var o in objects.Where(o => Text(o["kind"]) != "Namespace"))
                Assert.Equal("streaminference", Text(Map(o["metadata"])["namespace"]));
            var image = Map(Assert.Single(List(Map(LoadYaml(Path.Combine(variant, "kustomization.yaml")).Single())["images"])));
            var pod = Map(Map(Map(objects.Single(o => Text(o["kind"]) == "Deployment" && Name(o) == "streaminference")["spec"])["template"])["spec"]);
            var container = Map(Assert.Single(List(pod["containers"])));
            // Both Deployments (the processor, the evaluation) run the variant's image.
            foreach (var d in objects.Where(o => Text(o["kind"]) == "Deployment"))
                Assert.Equal($"{Text(image["newName"])}:{Text(image["newTag"])}", Text(Map(List(Map(Map(Map(d["spec"])["template"])["spec"])["containers"])[0])["image"]));
            Assert.Contains(List(container["envFrom"]).Select(Map), e => e.TryGetValue("configMapRef", out var r) && Text(Map(r)["name"]) == configMapName);
            if (variant.EndsWith("gpu", StringComparison.Ordinal))
            {
                Assert.EndsWith("-gpu", Text(image["newTag"]));
                Assert.Equal("1", Text(Map(Map(container["resources"])["limits"])["nvidia.com/gpu"]));
                Assert.True(Map(pod["nodeSelector"]).Count > 0);
            }
            output.WriteLine($"kubectl kustomize {variant}: {objects.Count} objects, image {Text(container["image"])}");
        }
    }

    /// <summary>
    /// Runs <c>serve --print-config</c> with exactly these environment variables: it binds and validates
    /// them (unknown keys are errors) and prints the effective settings, which must show each value.
    /// </summary>
    private async Task AssertAcceptedAsync(string source, IReadOnlyDictionary<string, string> environment)
    {
        Assert.NotEmpty(environment);
        // Paths are checked against this build; the image has the same schemas/ and models/ beside the binary.
        var (code, stdout, stderr) = await TestCli.RunAsync(["serve", "--print-config"], environment);
        Assert.True(code == 0, $"{source}: serve --print-config exited {code}: {stderr}");
        var printed = stdout.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(" = ", 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);
        var checkedValues = 0;
        foreach (var (name, value) in environment)
        {
            string? key = name switch
            {
                "KAFKA_BOOTSTRAP_SERVERS" => "Kafka:BootstrapServers",
                "SCHEMA_REGISTRY_URL" => "SchemaRegistry:Url",
                _ when name.StartsWith("STREAMINFERENCE__", StringComparison.Ordinal) => name["STREAMINFERENCE__".Length..].Replace("__", ":", StringComparison.Ordinal),
                _ => null,
            };
            if (name == "REDIS_URL")
            {
                Assert.StartsWith(new Uri(value).Host, printed["Redis:Configuration"]);
                continue;
            }
            Assert.True(key is not null, $"{source}: {name} is neither a well-known variable ({string.Join(", ", WellKnownVariables)}) nor STREAMINFERENCE__Section__Key");
            // Host sections and the Kafka client's own settings are printed under librdkafka's names.
            if (key.StartsWith("Logging:", StringComparison.Ordinal) || key.StartsWith("Kafka:Consumer:", StringComparison.Ordinal) || key.StartsWith("Kafka:Producer:", StringComparison.Ordinal)) continue;
            Assert.True(printed.TryGetValue(key, out var shown), $"{source}: {name} → {key} is not a processor setting");
            if (shown != StreamInference.Infrastructure.Processing.Secrets.Mask) Assert.Equal(value, shown, ignoreCase: true);
            checkedValues++;
        }
        output.WriteLine($"{source}: {environment.Count} variables accepted, {checkedValues} values seen in the effective settings");
    }

    private static async Task AssertCommandAcceptsOptionsAsync(IReadOnlyList<string> args)
    {
        var (code, help, error) = await TestCli.RunAsync([args[0], "--help"], new Dictionary<string, string>());
        Assert.True(code == 0, $"'{args[0]}' is not a command: {error}");
        foreach (var option in args.Where(a => a.StartsWith("--", StringComparison.Ordinal)))
            Assert.True(help.Contains(option + " ", StringComparison.Ordinal), $"'{args[0]}' has no option {option}");
    }

    // ---- 2. dashboard + alert rules query only what a running processor exports

    [Fact]
    public async Task DashboardAndAlertRules_QueryOnlyMetricsARunningProcessorExports()
    {
        var queries = DashboardQueries().Select(q => ("dashboard", q))
            .Concat(AlertExpressions().Select(q => ("alerts.yml", q))).ToList();
        Assert.True(queries.Count > 20, $"only {queries.Count} queries found");

        // A processor with its production configuration, scoring events with malformed ones among
        // them and closing drift windows, so labelled series exist.
        var input = await services.CreateTopicAsync("deploy", 4);
        var predictions = await services.CreateTopicAsync("deploy-predictions", 4);
        var dlq = await services.CreateTopicAsync("deploy-dlq", 1);
        var drift = await services.CreateTopicAsync("deploy-drift", 1);
        var settings = services.ChildSettings(services.ProcessorOptions(input, predictions, dlq, ServicesFixture.NewGroup("deploy")));
        settings["Drift:Topic"] = drift;
        settings["Drift:WindowEvents"] = "250";
        // A deployment, so the deployment row's series exist: a shadow compared every 200 events, a fallback tier.
        var deployment = Path.Combine(Path.GetTempPath(), $"si-dashboard-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(deployment, """
            version: 1
            champion: fraud-gbm@1
            shadows:
              - model: fraud-logreg@3
            fallback:
              model: fraud-logreg@3
              enterLagEvents: 1000000
            """);
        settings["Model:Deployment"] = deployment;
        settings["Model:ComparisonWindowEvents"] = "200";
        settings["Kafka:ShadowTopic"] = await services.CreateTopicAsync("deploy-shadow", 4);
        settings["Kafka:ComparisonTopic"] = await services.CreateTopicAsync("deploy-comparison", 1);
        using var child = await ProcessorHarness.StartChildAsync(settings);
        // And the live evaluation beside it (its own process, as deployed), with windows short enough to close during the run.
        var evaluationSettings = new Dictionary<string, string>(settings)
        {
            ["Evaluation:LabelsTopic"] = await services.CreateTopicAsync("deploy-labels", 4), ["Evaluation:Topic"] = await services.CreateTopicAsync("deploy-evaluation", 1),
            ["Evaluation:HorizonMs"] = "1000", ["Evaluation:WindowMs"] = "1000", ["Evaluation:ArrivalWindowEvents"] = "100", ["Evaluation:ReportIntervalMs"] = "200",
        };
        using var evaluator = ChildProcess.Start(TestCli.Command, ["evaluate", .. ChildProcess.SetArguments(evaluationSettings)], new ChildProcessOptions
        {
            Name = "evaluate", KeepLines = int.MaxValue, DropEnvironment = TestCli.IsSettingsVariable,
        });
        await evaluator.WaitAssignedAsync(ProcessorHarness.AssignTimeout);
        var port = await child.ListeningPort.WaitAsync(TimeSpan.FromSeconds(30));
        var evaluatorPort = await evaluator.ListeningPort.WaitAsync(TimeSpan.FromSeconds(30));
        // A healthy run is a daytime one: at night the synthetic live world is mostly fraud, which is neither healthy traffic
        // nor what the reference profiles describe.
        var daytime = ServicesFixture.DaytimeClockOffset();
        // Warmed up first (JIT, the first ONNX runs of three models): in production a 5-minute latency window makes the
        // cold start negligible; in a 5-second run on two loaded cores its first batches alone could set the p99.
        using (var warmUp = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") })
        using (var registry = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = services.SchemaRegistryUrl }))
        {
            await SyntheticPaymentProducer.ProduceAsync(services.BootstrapServers, registry, ServicesFixture.PaymentEventSchema,
                new ProduceOptions { Topic = input, Events = 200, Seed = 908, ClockOffset = daytime }, null, CancellationToken.None);
            var warm = Stopwatch.StartNew();
            static double Published(string text) => text.Split('\n').Where(l => l.StartsWith("streaminference_predictions_published_total{", StringComparison.Ordinal))
                .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
            while (Published(await warmUp.GetStringAsync("/metrics")) < 200 && warm.Elapsed < TimeSpan.FromSeconds(60)) await Task.Delay(100);
        }
        // A real Prometheus (where installed) scrapes both from before the measured events, every second, with the alert rules loaded.
        using var prometheus = PrometheusServer.StartIfInstalled([port, evaluatorPort], Path.Combine(Root, "deploy", "prometheus", "alerts.yml"), output);

        // A warm feature store, as production has: a cold one is real drift (every window feature at its default), and the
        // drift alert would rightly fire on it.
        using (var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis))
            await WarmStart.MaterializeAsync(redis.GetDatabase(), ServicesFixture.CardPaymentsPlan, now: DateTimeOffset.UtcNow + daytime);
        using (var registry = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = services.SchemaRegistryUrl }))
        {
            // Over about five seconds, so the evaluation's clock (event time) passes window ends plus the horizon; labels within a second.
            await SyntheticPaymentProducer.ProduceAsync(services.BootstrapServers, registry, ServicesFixture.PaymentEventSchema,
                new ProduceOptions
                {
                    // 0.2 % malformed: a few dead letters, well below the 1 % the dead-letter alert allows (a healthy run).
                    Topic = input, Events = 1_500, Rate = 300, BadRate = 0.002, Seed = 909, ClockOffset = daytime,
                    LabelsTopic = evaluationSettings["Evaluation:LabelsTopic"], LabelTimeScale = 1.0 / 86_400 / 4,
                }, null, CancellationToken.None);
        }

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        var exposition = "";
        var limit = Stopwatch.StartNew();
        while (limit.Elapsed < TimeSpan.FromSeconds(90))
        {
            exposition = await http.GetStringAsync("/metrics");
            if (Sample(exposition, "streaminference_drift_windows_total") >= 2 && exposition.Contains("streaminference_consumer_lag{", StringComparison.Ordinal)) break;
            await Task.Delay(250);
        }
        Assert.True(Sample(exposition, "streaminference_drift_windows_total") >= 2, $"no drift windows closed:{System.Environment.NewLine}{child.Tail()}");
        using var evaluatorHttp = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{evaluatorPort}") };
        var evaluation = "";
        limit.Restart();
        while (limit.Elapsed < TimeSpan.FromSeconds(60))
        {
            evaluation = await evaluatorHttp.GetStringAsync("/metrics");
            if (Sample(evaluation, "streaminference_evaluation_reports_total{window=\"event_time\",result=\"delivered\"}") > 0
                && Sample(evaluation, "streaminference_evaluation_reports_total{window=\"label_arrival\",result=\"delivered\"}") > 0) break;
            await Task.Delay(250);
        }
        Assert.True(Sample(evaluation, "streaminference_evaluation_reports_total{window=\"event_time\",result=\"delivered\"}") > 0,
            $"the evaluation reported no final window:{System.Environment.NewLine}{evaluator.Tail()}");
        var exported = Exposition.Parse(exposition + "\n" + evaluation);

        var problems = new List<string>();
        var used = new HashSet<string>();
        foreach (var (source, query) in queries)
        {
            foreach (Match m in Selector().Matches(query))
            {
                var metric = m.Groups["name"].Value;
                if (PromQlWords.Contains(metric)) continue;
                used.Add(metric);
                if (metric == "up") continue;   // made by Prometheus for every target
                if (!exported.Families.Contains(metric))
                {
                    problems.Add($"{source}: {metric} is not exported ({query})");
                    continue;
                }
                foreach (Match matcher in Matcher().Matches(m.Groups["matchers"].Value))
                {
                    var (label, op, value) = (matcher.Groups[1].Value, matcher.Groups[2].Value, matcher.Groups[3].Value);
                    if (label is "instance" or "job") continue;   // target labels, added by Prometheus
                    if (!exported.Labels.TryGetValue(metric, out var labels) || !labels.TryGetValue(label, out var values))
                        problems.Add($"{source}: {metric} has no label '{label}' ({query})");
                    else if (op == "=" && !values.Contains(value))
                        problems.Add($"{source}: {metric}{{{label}=\"{value}\"}} is never exported; values seen: {string.Join(", ", values)}");
                }
            }
            foreach (Match m in MetricName().Matches(query))
            {
                used.Add(m.Value);
                if (!exported.Families.Contains(m.Value)) problems.Add($"{source}: {m.Value} is not exported ({query})");
            }
        }
        output.WriteLine($"{queries.Count} queries use {used.Count} metric names; /metrics exports {exported.Families.Count}");
        Assert.True(problems.Count == 0, string.Join(System.Environment.NewLine, problems.Distinct()));
        foreach (var needed in new[] { "streaminference_records_consumed_total", "streaminference_consumer_lag", "streaminference_event_to_prediction_seconds_bucket",
                     "streaminference_batch_size_bucket", "streaminference_dead_letters_total", "streaminference_drift", "streaminference_model_info" })
            Assert.Contains(needed, used);   // the dashboard shows what the issue asks for

        // The real Prometheus: every dashboard query parses and returns data, every alert rule evaluates and is inactive.
        if (prometheus is not null) await AssertPrometheusEvaluatesAsync(prometheus);

        // The probes and the scrape path the manifests name answer; so does the image's health check.
        foreach (var path in ProbePaths().Append(PrometheusMetricsPath()).Distinct())
        {
            using var response = await http.GetAsync(path);
            Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode}");
        }
        var portEnv = new Dictionary<string, string> { ["STREAMINFERENCE__Http__Port"] = port.ToString(CultureInfo.InvariantCulture) };
        Assert.Equal(0, (await TestCli.RunAsync(HealthCheckArguments(), portEnv)).Code);
        Assert.Equal(0, (await TestCli.RunAsync([.. HealthCheckArguments(), "--ready"], portEnv)).Code);

        child.Terminate();
        Assert.True(await child.WaitForExitAsync(TimeSpan.FromSeconds(60)), "the processor did not stop on SIGTERM");
        Assert.Equal(1, (await TestCli.RunAsync(HealthCheckArguments(), portEnv)).Code);   // and it reports a dead processor
    }

    /// <summary>
    /// Through <paramref name="prometheus"/>'s HTTP API: each dashboard query, with the dashboard's variables at "All",
    /// must parse and return at least one series, and each alert rule must evaluate without error and be inactive —
    /// the run is healthy.
    /// </summary>
    private async Task AssertPrometheusEvaluatesAsync(PrometheusServer prometheus)
    {
        // Both targets up and scraped for a while (the rate windows need two samples; the alert rules a few evaluations).
        await prometheus.WaitAsync("count_over_time(up[1m]) >= 8 and up == 1", 2, TimeSpan.FromSeconds(60));
        var empty = new List<string>();
        var queries = DashboardQueries().Select(q => q.Replace("$__rate_interval", "1m", StringComparison.Ordinal).Replace("$instance", ".*", StringComparison.Ordinal)).Distinct().ToList();
        foreach (var query in queries)
        {
            try
            {
                // A variable's label_values(metric, label) is Grafana's, answered by the label-values API.
                var count = LabelValues().Match(query) is { Success: true } lv
                    ? (await prometheus.GetAsync($"/api/v1/label/{lv.Groups[2].Value}/values?match[]={Uri.EscapeDataString(lv.Groups[1].Value)}")).GetArrayLength()
                    : await prometheus.CountAsync(query);
                if (count == 0) empty.Add(query);
            }
            catch (HttpRequestException e)
            {
                empty.Add($"{query} — refused: {e.Message}");
            }
        }
        Assert.True(empty.Count == 0, $"{empty.Count} of {queries.Count} dashboard queries returned no series:{System.Environment.NewLine}{string.Join(System.Environment.NewLine, empty)}");

        var rules = (await prometheus.GetAsync("/api/v1/rules")).GetProperty("groups").EnumerateArray().SelectMany(g => g.GetProperty("rules").EnumerateArray())
            .Where(r => r.GetProperty("type").GetString() == "alerting").ToList();
        var active = rules.Where(r => r.GetProperty("health").GetString() != "ok" || r.GetProperty("state").GetString() != "inactive")
            .Select(r => $"{r.GetProperty("name").GetString()}: {r.GetProperty("health").GetString()} {r.GetProperty("state").GetString()} {(r.TryGetProperty("lastError", out var e) ? e.GetString() : "")} " +
                         string.Join("; ", r.GetProperty("alerts").EnumerateArray().Select(x => x.GetProperty("labels").ToString() + " = " + x.GetProperty("value").GetString()))).ToList();
        Assert.True(rules.Count > 10, $"only {rules.Count} alert rules loaded");
        Assert.True(active.Count == 0, $"alert rules not inactive on a healthy run:{System.Environment.NewLine}{string.Join(System.Environment.NewLine, active)}");
        output.WriteLine($"Prometheus: {queries.Count} dashboard queries each returned data; {rules.Count} alert rules evaluated, all inactive");
    }

    [GeneratedRegex(@"^label_values\((\w+),\s*(\w+)\)$")]
    private static partial Regex LabelValues();

    private static IEnumerable<string> DashboardQueries()
    {
        var files = Directory.GetFiles(Path.Combine(Root, "deploy", "grafana", "dashboards"), "*.json");
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            foreach (var q in Walk(doc.RootElement)) yield return q;
        }

        static IEnumerable<string> Walk(JsonElement e)
        {
            if (e.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in e.EnumerateObject())
                {
                    if (p.Name is "expr" or "definition" && p.Value.ValueKind == JsonValueKind.String) yield return p.Value.GetString()!;
                    foreach (var q in Walk(p.Value)) yield return q;
                }
            }
            else if (e.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in e.EnumerateArray())
                {
                    foreach (var q in Walk(item)) yield return q;
                }
            }
        }
    }

    private static IEnumerable<string> AlertExpressions()
    {
        var rules = Map(LoadYaml(Path.Combine("deploy", "prometheus", "alerts.yml")).Single());
        foreach (var group in List(rules["groups"]).Select(Map))
        {
            foreach (var rule in List(group["rules"]).Select(Map))
            {
                Assert.True(rule.ContainsKey("alert") && rule.ContainsKey("expr") && Map(rule["annotations"]).ContainsKey("summary"), $"incomplete rule in alerts.yml: {string.Join(", ", rule.Keys)}");
                yield return Text(rule["expr"]);
            }
        }
    }

    private static IEnumerable<string> ProbePaths()
    {
        var deployment = Map(LoadYaml(Path.Combine("deploy", "k8s", "base", "deployment.yaml")).Single());
        var container = Map(List(Map(Map(Map(deployment["spec"])["template"])["spec"])["containers"])[0]);
        foreach (var probe in new[] { "startupProbe", "livenessProbe", "readinessProbe" })
            yield return Text(Map(Map(container[probe])["httpGet"])["path"]);
    }

    private static string PrometheusMetricsPath()
    {
        var config = Map(LoadYaml(Path.Combine("deploy", "prometheus", "prometheus.yml")).Single());
        return Text(Map(List(config["scrape_configs"])[0])["metrics_path"]);
    }

    /// <summary>The HEALTHCHECK command of deploy/Dockerfile, without the leading "dotnet streaminference.dll".</summary>
    private static string[] HealthCheckArguments()
    {
        var health = Dockerfile.Load(Path.Combine(Root, "deploy", "Dockerfile")).Single(i => i.Keyword == "HEALTHCHECK");
        var args = Dockerfile.ExecForm(health.Arguments[health.Arguments.IndexOf("CMD", StringComparison.Ordinal)..][3..].Trim());
        Assert.Equal(new[] { "dotnet", "streaminference.dll" }, args[..2]);
        return args[2..];
    }

    private static double Sample(string exposition, string name)
    {
        foreach (var line in exposition.Split('\n'))
        {
            if (line.StartsWith(name + " ", StringComparison.Ordinal)) return double.Parse(line[(name.Length + 1)..], CultureInfo.InvariantCulture);
        }
        return 0;
    }

    // ---- 3. the Dockerfiles build the README's project and entry point from paths that exist

    [Theory]
    [InlineData("deploy/Dockerfile")]
    [InlineData("deploy/Dockerfile.gpu")]
    public void Dockerfile_BuildsTheReadmesProjectAndEntryPoint_FromPathsThatExist(string file)
    {
        var instructions = Dockerfile.Load(Path.Combine(Root, file));
        // The README runs `dotnet run --project <dir>`; the image must publish that project.
        var readmeProject = ReadmeProject().Match(File.ReadAllText(Path.Combine(Root, "README.md"))).Groups[1].Value;
        var csproj = Assert.Single(Directory.GetFiles(Path.Combine(Root, readmeProject), "*.csproj"));
        var assemblyName = XDocument.Load(csproj).Descendants("AssemblyName").Single().Value;

        var copied = new List<string>();
        string? restoredBefore = null;
        string? restoreFlags = null;
        foreach (var i in instructions)
        {
            if (i.Keyword == "COPY" && !i.Arguments.StartsWith("--from", StringComparison.Ordinal))
            {
                var parts = i.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(p => !p.StartsWith("--", StringComparison.Ordinal)).ToArray();
                foreach (var source in parts[..^1])
                {
                    var path = Path.Combine(Root, source);
                    Assert.True(File.Exists(path) || Directory.Exists(path), $"{file}: COPY {source} does not exist");
                    Assert.False(DockerIgnored(source), $"{file}: COPY {source} is excluded by .dockerignore");
                    copied.Add(source.TrimEnd('/'));
                }
            }
            if (i.Keyword == "RUN" && i.Arguments.Contains("dotnet restore", StringComparison.Ordinal))
            {
                restoredBefore ??= string.Join("\n", copied);
                restoreFlags = BuildFlags(i.Arguments);
            }
            if (i.Keyword == "RUN" && i.Arguments.Contains("dotnet publish", StringComparison.Ordinal))
            {
                // publish --no-restore uses what restore resolved: the same platform, self-containment and packages.
                Assert.Contains("--no-restore", i.Arguments);
                Assert.Equal(restoreFlags, BuildFlags(i.Arguments));
            }
            if (i.Keyword == "RUN" && DotnetVerb().Match(i.Arguments) is { Success: true } verb)
            {
                var project = verb.Groups[2].Value;
                Assert.True(File.Exists(Path.Combine(Root, project)), $"{file}: {verb.Groups[1].Value} {project} does not exist");
                Assert.Equal(Path.GetFullPath(csproj), Path.GetFullPath(Path.Combine(Root, project)));
            }
        }

        // Restore runs on the project files alone: all of them (the whole reference closure) and the
        // repository-wide props must be there by then, or the image fails to build after a new reference.
        Assert.NotNull(restoredBefore);
        var restored = restoredBefore!.Split('\n').Select(p => p.Replace('\\', '/')).ToHashSet();
        foreach (var project in ProjectClosure(csproj))
        {
            var relative = Path.GetRelativePath(Root, project).Replace('\\', '/');
            Assert.True(restored.Contains(relative), $"{file}: {relative} is not copied before dotnet restore");
            var props = Path.Combine(Path.GetDirectoryName(project)!, "Directory.Build.props");
            if (File.Exists(props)) Assert.Contains(Path.GetRelativePath(Root, props).Replace('\\', '/'), restored);
        }
        foreach (var shared in new[] { "Directory.Build.props", "Directory.Packages.props", "global.json" })
            Assert.Contains(shared, restored);

        // Entry point: the README's binary; runtime user not root; the port is the processor's; a health check.
        var entry = Dockerfile.ExecForm(instructions.Last(i => i.Keyword == "ENTRYPOINT").Arguments);
        Assert.True(entry.SequenceEqual(["dotnet", assemblyName + ".dll"]) || entry.SequenceEqual(["/app/" + assemblyName]), $"{file}: ENTRYPOINT {string.Join(' ', entry)} is not {assemblyName}");
        Assert.Equal(new[] { "serve" }, Dockerfile.ExecForm(instructions.Last(i => i.Keyword == "CMD").Arguments));
        var user = instructions.Last(i => i.Keyword == "USER").Arguments;
        Assert.DoesNotContain(user, new[] { "root", "0", "0:0" });
        using var appsettings = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, readmeProject, "appsettings.json")));
        Assert.Equal(appsettings.RootElement.GetProperty("Http").GetProperty("Port").GetInt32().ToString(CultureInfo.InvariantCulture),
            instructions.Last(i => i.Keyword == "EXPOSE").Arguments);
        var health = instructions.Last(i => i.Keyword == "HEALTHCHECK").Arguments;
        Assert.Contains("\"health\"", health);
        Assert.True(instructions.Count(i => i.Keyword == "FROM") >= 2, $"{file}: not a multi-stage build");
        if (file.EndsWith(".gpu", StringComparison.Ordinal))
            Assert.Contains(instructions, i => i.Keyword == "RUN" && i.Arguments.Contains("-p:OnnxRuntimeFlavor=Gpu", StringComparison.Ordinal) && i.Arguments.Contains("publish", StringComparison.Ordinal));
    }

    /// <summary>The arguments restore and publish must agree on, normalized: platform, self-containment, ONNX Runtime flavor.</summary>
    private static string BuildFlags(string command)
    {
        var tokens = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string Value(params string[] names)
        {
            var at = Array.FindIndex(tokens, t => names.Contains(t));
            return at >= 0 && at + 1 < tokens.Length ? tokens[at + 1] : "";
        }
        string Property(string name) =>
            tokens.Where(t => t.StartsWith($"-p:{name}=", StringComparison.OrdinalIgnoreCase)).Select(t => t[(t.IndexOf('=') + 1)..]).LastOrDefault() ?? "";
        var selfContained = Property("SelfContained") is { Length: > 0 } p ? p : Value("--self-contained", "--sc") is { Length: > 0 } v ? v : "false";
        return $"runtime={Value("-r", "--runtime")} arch={Value("-a", "--arch")} self-contained={selfContained.ToLowerInvariant()} flavor={Property("OnnxRuntimeFlavor")}";
    }

    private static IEnumerable<string> ProjectClosure(string csproj)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>([Path.GetFullPath(csproj)]);
        while (stack.Count > 0)
        {
            var p = stack.Pop();
            if (!seen.Add(p)) continue;
            foreach (var reference in XDocument.Load(p).Descendants("ProjectReference"))
                stack.Push(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(p)!, reference.Attribute("Include")!.Value.Replace('\\', '/'))));
        }
        return seen;
    }

    private static bool DockerIgnored(string source)
    {
        var patterns = File.ReadAllLines(Path.Combine(Root, ".dockerignore")).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#'));
        var path = source.TrimEnd('/') + "/";
        return patterns.Any(p => !p.Contains('*', StringComparison.Ordinal) && path.StartsWith(p.TrimEnd('/') + "/", StringComparison.Ordinal));
    }

    // ---- helpers

    /// <summary>Every document of a YAML file, anchors and merge keys resolved.</summary>
    private static List<object> LoadYaml(string relative)
    {
        var path = Path.Combine(Root, relative);
        Assert.True(File.Exists(path), $"{relative} does not exist");
        return LoadYamlText(File.ReadAllText(path), relative);
    }

    private static List<object> LoadYamlText(string text, string relative)
    {
        var deserializer = new DeserializerBuilder().Build();
        var parser = new MergingParser(new Parser(new StringReader(text)));
        parser.Consume<StreamStart>();
        var docs = new List<object>();
        try
        {
            while (parser.Accept<DocumentStart>(out _)) docs.Add(deserializer.Deserialize<object>(parser) ?? throw new InvalidDataException($"{relative}: empty document"));
        }
        catch (YamlException e)
        {
            Assert.Fail($"{relative} does not parse: {e.Message}");
        }
        Assert.NotEmpty(docs);
        return docs;
    }

    private static Dictionary<string, object> Map(object? node) =>
        node is Dictionary<object, object> d ? d.ToDictionary(kv => Text(kv.Key), kv => kv.Value) : throw new InvalidDataException($"expected a mapping, found {node?.GetType().Name ?? "nothing"}");

    private static List<object> List(object? node) =>
        node is List<object> l ? l : throw new InvalidDataException($"expected a sequence, found {node?.GetType().Name ?? "nothing"}");

    private static string Text(object? node) => node as string ?? throw new InvalidDataException($"expected a scalar, found {node?.GetType().Name ?? "nothing"}");

    private static string Name(Dictionary<string, object> k8sObject) => Text(Map(k8sObject["metadata"])["name"]);

    private static Dictionary<string, string> Labels(Dictionary<string, object> map) => map.ToDictionary(kv => kv.Key, kv => Text(kv.Value));

    private static IEnumerable<KeyValuePair<string, string>> Data(Dictionary<string, object> k8sObject, string field) =>
        Map(k8sObject[field]).Select(kv => KeyValuePair.Create(kv.Key, Text(kv.Value)));

    private static void AssertSelects(Dictionary<string, string> selector, Dictionary<string, string> labels, string what)
    {
        Assert.NotEmpty(selector);
        foreach (var (k, v) in selector)
            Assert.True(labels.TryGetValue(k, out var actual) && actual == v, $"{what} {k}={v} does not match the pod's labels");
    }

    /// <summary>A compose service's environment, in either the mapping or the list form.</summary>
    private static Dictionary<string, string> Environment(Dictionary<string, object> service) => service["environment"] switch
    {
        Dictionary<object, object> map => map.ToDictionary(kv => Text(kv.Key), kv => Text(kv.Value)),
        List<object> list => list.Select(Text).Select(e => e.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : ""),
        var other => throw new InvalidDataException($"environment: unexpected {other?.GetType().Name}"),
    };

    /// <summary>A start-up failure (here: the configured model does not exist) is one line that says what to fix, no stack trace, exit 1.</summary>
    [Fact]
    public async Task Serve_StartupFailure_IsOneLine_WithoutAStackTrace()
    {
        var (code, stdout, stderr) = await TestCli.RunAsync(["serve", "--embedded-kafka", "--set", "Model:Name=no-such-model", "--set", "Http:Port=0"],
            new Dictionary<string, string>());
        var output = stdout + stderr;
        Assert.Equal(1, code);
        Assert.Single(output.Split('\n'), l => l.Contains("Processor stopped: Model 'no-such-model' not found", StringComparison.Ordinal));
        Assert.DoesNotContain(output.Split('\n'), l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        Assert.DoesNotContain("FileNotFoundException", output);
    }

    /// <summary>model validate: the repository's example passes; a copy under another name with the old manifest is one problem line and exit 1.</summary>
    [Fact]
    public async Task ModelValidate_PassesTheExample_AndNamesACopiedModelsIdentityProblem()
    {
        var (ok, okOut, _) = await TestCli.RunAsync(["model", "validate", Path.Combine(Root, "models"), "--features", Path.Combine(Root, "schemas", "features", "card_payments.yaml")],
            new Dictionary<string, string>());
        Assert.Equal(0, ok);
        Assert.Contains("0 with problems", okOut);

        var repository = Path.Combine(Path.GetTempPath(), "si-validate-" + Guid.NewGuid().ToString("N"));
        var copy = Path.Combine(repository, "fraud-tree", "1");
        Directory.CreateDirectory(copy);
        try
        {
            foreach (var f in Directory.GetFiles(Path.Combine(Root, "models", "fraud-logreg", "3"))) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            var (code, stdout, _) = await TestCli.RunAsync(["model", "validate", repository, "--features", Path.Combine(Root, "schemas", "features", "card_payments.yaml")],
                new Dictionary<string, string>());
            Assert.Equal(1, code);
            Assert.Single(stdout.Split('\n'), l => l.StartsWith("problem", StringComparison.Ordinal) && l.Contains("fraud-logreg@3", StringComparison.Ordinal)
                                                    && l.Contains("fraud-tree@1", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(repository, recursive: true);
        }
    }

    private static readonly HashSet<string> PromQlWords = new(StringComparer.Ordinal)
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    };

    [GeneratedRegex(@"(?<![\w$""])(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?<matchers>[^}]*)\}|(?=\[))")]
    private static partial Regex Selector();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*""([^""]*)""")]
    private static partial Regex Matcher();

    [GeneratedRegex(@"\bstreaminference_[a-zA-Z0-9_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"for spec in ([a-z0-9.:\- ]+);")]
    private static partial Regex TopicLoop();

    [GeneratedRegex(@"dotnet run --project (\S+)")]
    private static partial Regex ReadmeProject();

    [GeneratedRegex(@"dotnet (restore|publish) (\S+\.csproj)")]
    private static partial Regex DotnetVerb();

    /// <summary>The families and label values of a Prometheus text exposition.</summary>
    private sealed class Exposition
    {
        public HashSet<string> Families { get; } = new(StringComparer.Ordinal);
        public Dictionary<string, Dictionary<string, HashSet<string>>> Labels { get; } = new(StringComparer.Ordinal);

        public static Exposition Parse(string text)
        {
            var e = new Exposition();
            foreach (var line in text.Split('\n'))
            {
                if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ');
                    e.Families.Add(parts[2]);
                    if (parts[3] is "histogram" or "summary")
                    {
                        foreach (var suffix in parts[3] == "histogram" ? new[] { "_bucket", "_sum", "_count" } : ["_sum", "_count"]) e.Families.Add(parts[2] + suffix);
                    }
                }
                else if (line.Length > 0 && line[0] != '#')
                {
                    var brace = line.IndexOf('{', StringComparison.Ordinal);
                    if (brace < 0) continue;
                    var name = line[..brace];
                    var labels = e.Labels.TryGetValue(name, out var l) ? l : e.Labels[name] = new(StringComparer.Ordinal);
                    foreach (Match m in Matcher().Matches(line[brace..line.IndexOf('}', brace)]))
                        (labels.TryGetValue(m.Groups[1].Value, out var values) ? values : labels[m.Groups[1].Value] = []).Add(m.Groups[3].Value);
                }
            }
            return e;
        }
    }

    /// <summary>Just enough of the Dockerfile syntax: instructions with continuation lines joined, comments dropped.</summary>
    private static class Dockerfile
    {
        public static List<(string Keyword, string Arguments)> Load(string path)
        {
            var result = new List<(string, string)>();
            var current = "";
            foreach (var raw in File.ReadAllLines(path))
            {
                var line = raw.Trim();
                if (line.StartsWith('#') || line.Length == 0 && current.Length == 0) continue;
                if (line.EndsWith('\\'))
                {
                    current += line[..^1] + " ";
                    continue;
                }
                current += line;
                var space = current.IndexOf(' ', StringComparison.Ordinal);
                if (space > 0) result.Add((current[..space].ToUpperInvariant(), Regex.Replace(current[(space + 1)..].Trim(), @"\s+", " ")));
                current = "";
            }
            return result;
        }

        public static string[] ExecForm(string arguments)
        {
            using var doc = JsonDocument.Parse(arguments);
            return [.. doc.RootElement.EnumerateArray().Select(e => e.GetString()!)];
        }
    }
}
