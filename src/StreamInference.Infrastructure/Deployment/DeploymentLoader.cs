using Microsoft.Extensions.Logging;
using StreamInference.Core.Deployment;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Infrastructure.Deployment;

/// <summary>How a deployment's models are loaded and compared: where they live, what they score, the batch buffers' sizes.</summary>
/// <param name="Capacity">Rows per batch (the pipeline's batch limit).</param>
/// <param name="ScoreWidth">Score columns of the batch buffers: the champion's, the canary's and the fallback's must match it.</param>
public sealed record DeploymentSettings(
    string Path, string Repository, FeaturePlan Plan, OnnxScorerOptions ScorerOptions, int Capacity, int ScoreWidth,
    int ComparisonWindowEvents = 2000, double DecisionThreshold = 0.5, bool FallbackOnError = false);

/// <summary>
/// Reads the deployment file and loads a version of it: each model from the repository (checked against the feature
/// set and warmed up, like the single model a processor serves), reusing the models an earlier version already
/// loaded. A version that cannot be served throws in one line and leaves nothing loaded.
/// </summary>
public sealed class DeploymentLoader(DeploymentSettings settings, ILogger log, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public string Path => settings.Path;
    public DeploymentSettings Settings => settings;

    public DeploymentSpec ReadSpec() => DeploymentSpec.LoadFile(settings.Path);

    /// <summary>
    /// Loads <paramref name="spec"/>, taking the models <paramref name="reuse"/> holds as they are; the fallback tier's
    /// state carries over from <paramref name="previous"/> when it keeps the same fallback model.
    /// </summary>
    public ServingDeployment Load(DeploymentSpec spec, IReadOnlyList<DeployedModel> reuse, ServingDeployment? previous = null)
    {
        var loaded = new List<DeployedModel>();
        try
        {
            DeployedModel Get(ModelRef reference, string role, bool servesBatch)
            {
                var model = reuse.FirstOrDefault(m => m.Reference == reference) ?? loaded.FirstOrDefault(m => m.Reference == reference);
                if (model is null)
                {
                    var dir = ModelRepository.Resolve(settings.Repository, reference.Name, reference.Version);
                    var scorer = new OnnxScorer(dir, settings.Plan, settings.ScorerOptions);
                    model = new DeployedModel(reference, scorer, settings.Capacity, settings.Plan.FeatureCount);
                    loaded.Add(model);
                    RuntimeLog.ModelLoaded(log, scorer.ModelName, scorer.ModelVersion, dir, settings.Plan.Name, settings.Plan.Version,
                        settings.Plan.FeatureCount, scorer.OutputWidth);
                    foreach (var warning in scorer.Warnings) RuntimeLog.ModelWarning(log, warning);
                }
                if (servesBatch && model.Scorer.OutputWidth != settings.ScoreWidth)
                    throw new DeploymentException($"the {role} {reference} has {model.Scorer.OutputWidth} score column(s), the batches {settings.ScoreWidth}: " +
                                                  "the models that serve predictions (champion, canary, fallback) must have as many.");
                return model;
            }

            var champion = Get(spec.Champion, "champion", servesBatch: true);
            Challenger? canary = null;
            if (spec.Canary is { } c)
                canary = new Challenger(Get(c.Model, "canary", servesBatch: true), Core.Pipeline.ServingArm.Canary,
                    new EntitySampler(c.Salt, c.Share), Compare(spec.Champion, c.Model));
            var shadows = spec.Shadows.Select(s => new Challenger(Get(s.Model, "shadow", servesBatch: false), Core.Pipeline.ServingArm.Shadow,
                s.Sample < 1 ? new EntitySampler($"shadow:{s.Model}", s.Sample) : null, Compare(spec.Champion, s.Model))).ToList();
            FallbackTier? fallback = null;
            if (spec.Fallback is { } f)
            {
                var controller = new FallbackController(f, _time);
                if (previous?.Fallback is { } before && before.Model.Reference == f.Model) controller.ContinueFrom(before.Controller);
                fallback = new FallbackTier(Get(f.Model, "fallback", servesBatch: true), controller, f.OnError || settings.FallbackOnError);
            }
            return new ServingDeployment(spec, champion, canary, shadows, fallback);
        }
        catch
        {
            foreach (var m in loaded) m.Dispose();
            throw;
        }
    }

    private ModelComparison Compare(ModelRef champion, ModelRef challenger) =>
        new(champion.ToString(), challenger.ToString(), settings.ComparisonWindowEvents, settings.DecisionThreshold);

    /// <summary>Disposes the models of <paramref name="deployment"/> that <paramref name="keep"/> does not hold.</summary>
    public void Release(ServingDeployment deployment, IEnumerable<DeployedModel> keep)
    {
        var kept = keep.ToHashSet();
        foreach (var m in deployment.Models)
            if (!kept.Contains(m)) m.Dispose();
    }
}
