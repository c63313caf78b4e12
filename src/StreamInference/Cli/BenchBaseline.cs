using System.Buffers;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Avro.Generic;
using Confluent.Kafka;
using Confluent.Kafka.SyncOverAsync;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using Microsoft.ML.OnnxRuntime;
using StackExchange.Redis;
using StreamInference.Core.Features;
using StreamInference.Core.Features.Windows;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Processing;
using StreamInference.Infrastructure.Redis;

namespace StreamInference.Cli;

/// <summary>
/// <c>bench baseline</c>: the consumer a team would write by hand for the same job, without this project's
/// pipeline — one event at a time: the official Confluent Avro deserializer, awaited Redis reads and writes of
/// the same features (the project's feature math, the naive way: every window series read whole, the changed
/// buckets written back), one ONNX Runtime run, one JSON prediction produced. Runs until SIGTERM.
/// </summary>
public static class BenchBaseline
{
    private const string ClientId = "streaminference-bench-baseline";

    public static Command Create()
    {
        var bootstrap = new Option<string>("--bootstrap-servers") { Required = true, Description = "Kafka bootstrap servers." };
        var input = new Option<string>("--input-topic") { Required = true, Description = "Topic of Avro payment events to consume." };
        var output = new Option<string>("--output-topic") { Required = true, Description = "Topic to produce the predictions to (JSON: event_id, score)." };
        var group = new Option<string>("--group-id") { Required = true, Description = "Consumer group." };
        var registry = new Option<string>("--schema-registry-url") { Required = true, Description = "Schema registry of the input's writer schemas." };
        var redis = new Option<string>("--redis") { Required = true, Description = "Redis configuration or redis:// URL holding the feature state (window series and lookups)." };
        var modelDir = new Option<string?>("--model-dir") { Description = "Model version directory (model.onnx, manifest.json); default: what `serve` serves by default (models/fraud-gbm, latest version)." };
        var command = new Command("baseline",
            "Hand-written baseline for `bench`: per event, Confluent's Avro deserializer, awaited Redis reads and writes of the same " +
            "features, one ONNX Runtime run and one produced prediction (no batching, no pipelining across events), until SIGTERM.")
        {
            bootstrap, input, output, group, registry, redis, modelDir,
        };
        command.SetAction((parse, ct) => Task.Run(() => RunAsync(parse.GetValue(bootstrap)!, parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(group)!,
            parse.GetValue(registry)!, parse.GetValue(redis)!, parse.GetValue(modelDir), ct), CancellationToken.None));
        return command;
    }

    private static async Task<int> RunAsync(string bootstrap, string input, string output, string group, string registryUrl, string redisConfig,
        string? modelDir, CancellationToken ct)
    {
        FeaturePlan plan;
        Model model;
        try
        {
            plan = FeatureSetLoader.LoadFile(PathResolver.Resolve("schemas/features/card_payments.yaml"));
            var defaults = new ModelOptions();
            model = new Model(modelDir ?? ModelRepository.Resolve(PathResolver.Resolve(defaults.Repository), defaults.Name, defaults.Version), plan);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or FeatureDefinitionException or OnnxRuntimeException)
        {
            await Console.Error.WriteLineAsync($"bench baseline: {e.Message}").ConfigureAwait(false);
            return 2;
        }
        using (model)
        {
            ConnectionMultiplexer redis;
            try
            {
                redis = await ConnectionMultiplexer.ConnectAsync(RedisUrl.ToConfiguration(redisConfig)).ConfigureAwait(false);
            }
            catch (RedisConnectionException e)
            {
                await Console.Error.WriteLineAsync($"bench baseline: Redis: {e.Message}").ConfigureAwait(false);
                return 2;
            }
            using (redis)
                return await ConsumeAsync(bootstrap, input, output, group, registryUrl, new Features(redis.GetDatabase(), plan), model, ct).ConfigureAwait(false);
        }
    }

    private static async Task<int> ConsumeAsync(string bootstrap, string input, string output, string group, string registryUrl, Features features, Model model,
        CancellationToken ct)
    {
        using var schemas = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = registryUrl });
        // The passthrough's client settings (the processor's defaults), except that offsets are stored as records
        // are consumed (EnableAutoOffsetStore) — what a hand-written consumer does, at-most-once on a crash.
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5, CompressionType = CompressionType.Lz4, ClientId = ClientId,
        }).Build();
        using var consumer = new ConsumerBuilder<byte[], GenericRecord>(new ConsumerConfig
        {
            BootstrapServers = bootstrap, GroupId = group, AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = true, EnableAutoOffsetStore = true, ClientId = ClientId,
        }).SetValueDeserializer(new AvroDeserializer<GenericRecord>(schemas).AsSyncOverAsync()).Build();
        consumer.Subscribe(input);
        Console.Error.WriteLine($"baseline {input} → {output} (model {model.Name}@{model.Version})");
        var (failed, skipped) = (0, 0);
        var vector = new float[features.Width];
        try
        {
            while (!ct.IsCancellationRequested)
            {
                ConsumeResult<byte[], GenericRecord> r;
                try
                {
                    r = consumer.Consume(ct);
                }
                catch (ConsumeException e)
                {
                    // An undecodable record: a hand-written consumer logs and moves on (the processor dead-letters it).
                    if (skipped++ == 0) Console.Error.WriteLine($"bench baseline: skipping undecodable records ({e.Error.Reason})");
                    continue;
                }
                if (r is null || r.IsPartitionEOF) continue;
                var eventId = await features.ComputeAsync(r.Message.Value, r.Message.Timestamp.UnixTimestampMs, vector).ConfigureAwait(false);
                if (eventId is null)
                {
                    skipped++;
                    continue;
                }
                var score = model.Score(vector);
                ProducerQueue.Produce(producer, output, new Message<byte[], byte[]> { Key = r.Message.Key, Value = Prediction(eventId, score) },
                    report => { if (report.Error.IsError) Interlocked.Increment(ref failed); });
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is RedisException or RedisTimeoutException)
        {
            Console.Error.WriteLine($"bench baseline: Redis: {e.Message}");
            Interlocked.Increment(ref failed);
        }
        producer.Flush(TimeSpan.FromSeconds(10));
        consumer.Close();
        if (skipped > 0) Console.Error.WriteLine($"bench baseline: {skipped} record(s) skipped (undecodable, or no entity key or event id)");
        if (failed > 0) Console.Error.WriteLine($"bench baseline: {failed} error(s)");
        return failed == 0 ? 0 : 1;
    }

    private static byte[] Prediction(string eventId, float score)
    {
        var buffer = new ArrayBufferWriter<byte>(96);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("event_id", eventId);
            json.WriteNumber("score", score);
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// One event's feature vector from Redis, the way it is written by hand: read the entity's window state and the
    /// lookups, compute, write the changed buckets back — two awaited round trips per event (the commands of one
    /// round trip go out together; nothing is shared across events).
    /// </summary>
    private sealed class Features(IDatabase db, FeaturePlan plan)
    {
        private readonly WindowEngine _engine = new(plan);
        private readonly FeatureVectorAssembler _assembler = new(plan);
        private readonly double[] _numerics = new double[plan.NumericFields.Count];
        private readonly string?[] _texts = new string?[plan.TextFields.Count];
        private readonly double[] _windows = new double[plan.WindowCount];
        private readonly double[] _lookups = new double[plan.LookupValueCount];
        private readonly long[] _defaulted = new long[plan.FeatureCount];
        private readonly RedisValue[][] _lookupFields = [.. plan.Lookups.Select(l => l.Fields.Select(f => (RedisValue)f).Append(FeatureKeys.AsOfField).ToArray())];
        private readonly TimeSpan _expiry = TimeSpan.FromMilliseconds(RedisFeatureStore.ExpiryMs(plan));
        // A fresh version token with every write: a processor holding the entity's state in its cache (its
        // WindowWrite.lua only writes while the token it stored is still there) then re-reads it instead of
        // overwriting this write.
        private readonly string _tokenPrefix = "baseline-" + Guid.NewGuid().ToString("N")[..8] + "-";
        private long _tokens;

        public int Width => plan.FeatureCount;

        /// <summary>Fills <paramref name="vector"/> and returns the event id; null when the event has no entity key or id (the processor dead-letters those).</summary>
        public async Task<string?> ComputeAsync(GenericRecord record, long kafkaTimestampMs, float[] vector)
        {
            // The slots the processor's decoder fills, read by field name.
            foreach (var f in plan.NumericFields) _numerics[f.Slot] = Number(record.TryGetValue(f.Name, out var v) ? v : null);
            foreach (var f in plan.TextFields) _texts[f.Slot] = Text(record.TryGetValue(f.Name, out var v) ? v : null);
            var entity = _texts[plan.EntityKeySlot];
            var eventId = Text(record.TryGetValue(plan.IdField, out var id) ? id : null);
            if (string.IsNullOrEmpty(entity) || string.IsNullOrEmpty(eventId)) return null;
            var time = Number(record.TryGetValue(plan.TimeField, out var tv) ? tv : null);
            var t = (long)(double.IsFinite(time) ? time : kafkaTimestampMs);

            // Round trip 1: the entity's watermark and every bucket of its series, and each lookup hash.
            var series = plan.Series;
            var meta = FeatureKeys.WindowMeta(plan, entity);
            var seriesKeys = series.Select(s => (RedisKey)FeatureKeys.Series(plan, s, entity)).ToArray();
            var wmRead = db.HashGetAsync(meta, "wm");
            var bucketReads = seriesKeys.Select(k => db.HashGetAllAsync(k)).ToArray();
            var lookupReads = new Task<RedisValue[]>?[plan.Lookups.Count];
            for (var l = 0; l < lookupReads.Length; l++)
                if (_texts[plan.Lookups[l].EntityTextSlot] is { } key) lookupReads[l] = db.HashGetAsync(FeatureKeys.Lookup(plan.Lookups[l], key), _lookupFields[l]);
            Task[] reads = [wmRead, .. bucketReads, .. lookupReads.OfType<Task>()];
            await Task.WhenAll(reads).ConfigureAwait(false);

            var state = _engine.NewState();
            var wm = wmRead.Result;
            if (!wm.IsNullOrEmpty) state.Watermark = (long)double.Parse((string)wm!, CultureInfo.InvariantCulture);
            for (var s = 0; s < series.Count; s++)
                foreach (var entry in bucketReads[s].Result)
                    state.Series[s].Buckets[long.Parse((string)entry.Name!, CultureInfo.InvariantCulture)] = RedisFeatureStore.ParseStats((string)entry.Value!);
            _engine.Read(state, state.Watermark, t, _windows);
            FillLookups(lookupReads, t);
            _assembler.Assemble(_numerics, _texts, _windows, _lookups, vector, _defaulted);

            // Round trip 2: the event into its buckets (unless late), the watermark, old buckets out, expiry on new keys.
            if (_engine.IsLate(state.Watermark, t)) return eventId;
            var emptyBefore = state.Series.Select(x => x.Buckets.Count == 0).ToArray();
            _engine.Add(state, t, _numerics);
            var writes = new List<Task>(2 * series.Count + 2);
            for (var s = 0; s < series.Count; s++)
            {
                var value = series[s].ValueSlot < 0 ? 1.0 : _numerics[series[s].ValueSlot];
                if (!WindowEngine.IsAggregatable(value)) continue;
                var bucket = WindowEngine.BucketOf(series[s], t);
                writes.Add(db.HashSetAsync(seriesKeys[s], bucket, RedisFeatureStore.FormatStats(state.Series[s].Buckets[bucket])));
                if (emptyBefore[s]) writes.Add(db.KeyExpireAsync(seriesKeys[s], _expiry));
                var from = _engine.RetainFrom(series[s], state.Watermark);
                var old = state.Series[s].Buckets.Keys.Where(b => b < from).Select(b => (RedisValue)b).ToArray();
                if (old.Length > 0) writes.Add(db.HashDeleteAsync(seriesKeys[s], old));
            }
            writes.Add(db.HashSetAsync(meta, [
                new HashEntry("wm", state.Watermark.ToString(CultureInfo.InvariantCulture)),
                new HashEntry("v", _tokenPrefix + (++_tokens).ToString(CultureInfo.InvariantCulture)),
            ]));
            if (wm.IsNullOrEmpty) writes.Add(db.KeyExpireAsync(meta, _expiry));
            await Task.WhenAll(writes).ConfigureAwait(false);
            return eventId;
        }

        /// <summary>Lookup values as the processor takes them: missing, or stale or newer than the event (<c>_asof</c>), is NaN (the feature's default).</summary>
        private void FillLookups(Task<RedisValue[]>?[] reads, long t)
        {
            Array.Fill(_lookups, double.NaN);
            for (var l = 0; l < reads.Length; l++)
            {
                var spec = plan.Lookups[l];
                var n = spec.Fields.Count;
                if (reads[l]?.Result is not { } got || got.Length <= n || !got[n].TryParse(out double asOf)) continue;
                if (!FeatureKeys.IsUsable((long)asOf, t, spec.TtlMs)) continue;
                for (var j = 0; j < n; j++) _lookups[spec.FirstValueSlot + j] = got[j].TryParse(out double d) ? d : double.NaN;
            }
        }

        private static double Number(object? v) => v switch
        {
            double d => d,
            float f => f,
            int i => i,
            long l => l,
            bool b => b ? 1.0 : 0.0,
            DateTime dt => (dt.ToUniversalTime() - DateTime.UnixEpoch).TotalMilliseconds,
            DateTimeOffset dto => dto.ToUnixTimeMilliseconds(),
            _ => double.NaN,
        };

        private static string? Text(object? v) => v switch
        {
            string s => s,
            GenericEnum e => e.Value,
            int i => i.ToString(CultureInfo.InvariantCulture),
            long l => l.ToString(CultureInfo.InvariantCulture),
            _ => null,
        };
    }

    /// <summary>The model, run with a batch of one: a new input tensor per event, the score column read from the output.</summary>
    private sealed class Model : IDisposable
    {
        private readonly InferenceSession _session;
        private readonly RunOptions _run;
        private readonly string[] _input;
        private readonly string[] _output;
        private readonly int[] _columns;     // feature-vector index of each model input column (the manifest's order)
        private readonly int? _scoreColumn;
        private readonly float[] _row;

        public Model(string directory, FeaturePlan plan)
        {
            var manifestPath = Path.Combine(directory, "manifest.json");
            var manifest = ModelManifest.Load(manifestPath);
            OnnxScorer.CheckAgainstFeatureSet(manifest, plan, manifestPath);
            (Name, Version) = (manifest.Name, manifest.Version);
            _session = new InferenceSession(Path.Combine(directory, "model.onnx"));
            if (_session.InputNames.Count != 1 || _session.InputNames[0] != manifest.Input)
            {
                _session.Dispose();
                throw new InvalidDataException($"{directory}: the baseline feeds one float [N, F] input '{manifest.Input}'; the model's inputs are {string.Join(", ", _session.InputNames)}.");
            }
            _input = [manifest.Input];
            _output = [manifest.ScoreOutput ?? _session.OutputNames[0]];
            _columns = [.. manifest.Features.Select(plan.IndexOf)];
            _scoreColumn = manifest.PrimaryScoreIndex;
            _row = new float[_columns.Length];
            _run = new RunOptions();
        }

        public string Name { get; }
        public string Version { get; }

        /// <summary>The score column: the manifest's primaryScoreIndex, else the last (a binary classifier's positive class), as the processor publishes it.</summary>
        public float Score(float[] features)
        {
            for (var j = 0; j < _columns.Length; j++) _row[j] = features[_columns[j]];
            using var value = OrtValue.CreateTensorValueFromMemory(_row, [1, _row.Length]);
            using var outputs = _session.Run(_run, _input, [value], _output);
            var scores = outputs[0].GetTensorDataAsSpan<float>();
            return scores[_scoreColumn ?? scores.Length - 1];
        }

        public void Dispose()
        {
            _session.Dispose();
            _run.Dispose();
        }
    }
}
