using System.Globalization;
using StreamInference.Batch.Onnx;
using StreamInference.Batch.Synthetic;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Batch.Training;

public sealed record TrainingReport(string ModelDirectory, int TrainRows, int TestRows, double TrainAuc, double TestAuc, double FraudRate);

/// <summary>
/// Builds the example fraud model: a synthetic history (event-time ordered), feature vectors through
/// the same <see cref="FeatureVectorAssembler"/> the processor uses, a time-based split, logistic
/// regression, and an ONNX graph (MatMul → Add → Sigmoid) with its manifest.
/// </summary>
public static class ExampleModel
{
    public const string Name = "fraud-logreg";

    public static TrainingReport Train(FeaturePlan plan, string modelDirectory, string version = "1", int seed = 42, int events = 60_000)
    {
        var generator = new PaymentGenerator(seed);
        var assembler = new FeatureVectorAssembler(plan);
        var start = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var span = TimeSpan.FromDays(30);
        var x = new float[events][];
        var y = new bool[events];
        var numerics = new double[plan.NumericFields.Count];
        var texts = new string?[plan.TextFields.Count];
        var lookups = new double[plan.LookupValueCount];
        var defaulted = new long[plan.FeatureCount];
        var cards = generator.Cards.ToDictionary(c => c.Id);
        var merchants = generator.Merchants.ToDictionary(m => m.Id);
        for (var i = 0; i < events; i++)
        {
            var time = start + span * ((double)i / events);
            var e = generator.Next(time, shapeHourOfDay: true);
            Slots(plan, e, generator, cards[e.CardId], merchants[e.MerchantId], numerics, texts, lookups);
            x[i] = new float[plan.FeatureCount];
            assembler.Assemble(numerics, texts, lookups, x[i], defaulted);
            y[i] = e.IsFraud;
        }

        // Time-based split: train on the first 80 % of the period, evaluate on the last 20 %.
        var cut = (int)(events * 0.8);
        var model = LogisticRegression.Fit(x[..cut], y[..cut]);
        var trainAuc = LogisticRegression.Auc(x[..cut].Select(r => model.Predict(r)).ToArray(), y[..cut]);
        var testAuc = LogisticRegression.Auc(x[cut..].Select(r => model.Predict(r)).ToArray(), y[cut..]);

        Directory.CreateDirectory(modelDirectory);
        var f = plan.FeatureCount;
        var graph = new OnnxGraph("fraud_logreg")
            .InputMatrix("features", f)
            .Initializer("weights", model.Weights.Select(w => (float)w).ToArray(), f, 1)
            .Initializer("bias", [(float)model.Bias], 1)
            .Node("MatMul", ["features", "weights"], ["logit_raw"])
            .Node("Add", ["logit_raw", "bias"], ["logit"])
            .Node("Sigmoid", ["logit"], ["probability"])
            .OutputTensor("probability", OnnxGraph.Float, -1, 1);
        File.WriteAllBytes(Path.Combine(modelDirectory, "model.onnx"), graph.ToModel(docString: "Logistic regression on the card_payments feature set."));

        var manifest = new ModelManifest
        {
            Name = Name,
            Version = version,
            Description = "Card-payment fraud probability (logistic regression on synthetic history).",
            FeatureSet = plan.Name,
            FeatureSetVersion = plan.Version,
            Input = "features",
            Features = plan.Features.Select(s => s.Name).ToList(),
            ScoreOutput = "probability",
            PrimaryScoreIndex = 0,
            ScoreMeaning = "probability that the payment is fraudulent",
            Metrics = new Dictionary<string, double>
            {
                ["train_auc"] = Math.Round(trainAuc, 4),
                ["test_auc"] = Math.Round(testAuc, 4),
                ["train_rows"] = cut,
                ["test_rows"] = events - cut,
                ["fraud_rate"] = Math.Round(y.Count(v => v) / (double)events, 4),
            },
            GeneratedBy = $"streaminference train --seed {seed.ToString(CultureInfo.InvariantCulture)} --events {events.ToString(CultureInfo.InvariantCulture)}",
        };
        File.WriteAllText(Path.Combine(modelDirectory, "manifest.json"), manifest.ToJson() + "\n");
        return new TrainingReport(modelDirectory, cut, events - cut, trainAuc, testAuc, y.Count(v => v) / (double)events);
    }

    /// <summary>Fills the decoder-shaped slots for a synthetic event, as the streaming path would see it.</summary>
    public static void Slots(FeaturePlan plan, PaymentEvent e, PaymentGenerator generator, CardProfile card, MerchantProfile merchant,
        double[] numerics, string?[] texts, double[] lookups)
    {
        foreach (var field in plan.NumericFields) numerics[field.Slot] = Numeric(e, field.Name);
        foreach (var field in plan.TextFields) texts[field.Slot] = Text(e, field.Name);
        foreach (var lookup in plan.Lookups)
        {
            var values = lookup.Name switch
            {
                "card_profile" => generator.CardFeatures(card),
                "merchant_profile" => PaymentGenerator.MerchantFeatures(merchant),
                _ => new Dictionary<string, double>(),
            };
            for (var j = 0; j < lookup.Fields.Count; j++)
                lookups[lookup.FirstValueSlot + j] = values.TryGetValue(lookup.Fields[j], out var v) ? v : double.NaN;
        }
    }

    private static double Numeric(PaymentEvent e, string field) => field switch
    {
        "amount" => e.Amount,
        "event_time" => e.EventTime.ToUnixTimeMilliseconds(),
        "is_foreign" => e.IsForeign ? 1 : 0,
        _ => double.NaN,
    };

    private static string? Text(PaymentEvent e, string field) => field switch
    {
        "event_id" => e.EventId,
        "card_id" => e.CardId,
        "merchant_id" => e.MerchantId,
        "channel" => e.Channel.ToString(),
        "country" => e.Country,
        "currency" => e.Currency,
        _ => null,
    };
}
