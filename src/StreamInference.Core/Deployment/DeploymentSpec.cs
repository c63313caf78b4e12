using System.Globalization;

namespace StreamInference.Core.Deployment;

/// <summary>A pinned model: <c>name@version</c> in the model repository.</summary>
public sealed record ModelRef(string Name, string Version)
{
    public override string ToString() => $"{Name}@{Version}";

    /// <summary>Parses <c>name@version</c>; the version is required and cannot be <c>latest</c> (a deployment names what it serves).</summary>
    public static ModelRef Parse(string text, string what)
    {
        var at = text.IndexOf('@', StringComparison.Ordinal);
        if (at <= 0 || at == text.Length - 1)
            throw new DeploymentException($"{what} '{text}' must be name@version, e.g. fraud-gbm@1.");
        var name = text[..at];
        var version = text[(at + 1)..];
        if (version.Equals("latest", StringComparison.OrdinalIgnoreCase))
            throw new DeploymentException($"{what} '{text}': a deployment pins versions (promote and rollback change them), so 'latest' is not allowed.");
        if (name.IndexOfAny(['/', '\\']) >= 0 || version.IndexOfAny(['/', '\\', '@']) >= 0)
            throw new DeploymentException($"{what} '{text}' must be name@version with plain directory names.");
        return new ModelRef(name, version);
    }
}

/// <summary>A deployment file that cannot be used: one line, with the file and where in it.</summary>
public sealed class DeploymentException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A shadow: scored beside the champion, published where the champion's consumers do not read.</summary>
/// <param name="Sample">Share of events scored, by the same sticky entity hash as the canary (1 = every event).</param>
public sealed record ShadowSpec(ModelRef Model, double Sample);

/// <summary>A canary (A/B) arm: a sticky share of entities, chosen by a salted hash of the entity key, served by the challenger.</summary>
public sealed record CanarySpec(ModelRef Model, double Share, string Salt);

/// <summary>
/// The fallback tier: a cheaper model that takes over while the processor is behind (consumer lag or event age over
/// a budget, back below the lower exit budget), never switching more often than the minimum dwell, and that scores
/// batches the champion fails on when <see cref="OnError"/> is set.
/// </summary>
public sealed record FallbackSpec(
    ModelRef Model, long? EnterLagEvents, long? ExitLagEvents, long? EnterEventAgeMs, long? ExitEventAgeMs, long MinDwellMs, bool OnError);

/// <summary>
/// Which models a processor serves and how: the champion answers every event (its predictions are what consumers
/// read), shadows are scored beside it, a canary serves a sticky share of entities, a fallback tier takes over under
/// load. <see cref="Version"/> is stamped on every prediction, so each one says which deployment scored it.
/// Read from <c>deployment.yaml</c> in the model repository (<see cref="FileName"/>).
/// </summary>
public sealed record DeploymentSpec(long Version, ModelRef Champion, IReadOnlyList<ShadowSpec> Shadows, CanarySpec? Canary, FallbackSpec? Fallback,
    ModelRef? Previous = null)
{
    public const string FileName = "deployment.yaml";

    /// <summary>Every model the deployment loads, each once, the champion first.</summary>
    public IReadOnlyList<ModelRef> Models =>
        [.. new[] { Champion }.Concat(Shadows.Select(s => s.Model)).Concat(Canary is null ? [] : [Canary.Model])
            .Concat(Fallback is null ? [] : [Fallback.Model]).Distinct()];

    public static DeploymentSpec LoadFile(string path)
    {
        if (!File.Exists(path)) throw new DeploymentException($"Deployment file '{path}' does not exist.");
        return Parse(File.ReadAllText(path), path);
    }

    public static DeploymentSpec Parse(string yaml, string sourceName = "<inline>")
    {
        var doc = YamlFiles.Deserialize<DeploymentDocument>(yaml, sourceName, (message, e) => new DeploymentException(message, e));
        if (doc is null) throw new DeploymentException($"{sourceName}: the document is empty.");
        try
        {
            return Compile(doc);
        }
        catch (DeploymentException e)
        {
            throw new DeploymentException($"{sourceName}: {e.Message}", e);
        }
    }

    private static DeploymentSpec Compile(DeploymentDocument doc)
    {
        if (doc.Version is not { } version || version < 1) throw new DeploymentException("version must be a whole number of at least 1 (promote and rollback raise it).");
        if (string.IsNullOrWhiteSpace(doc.Champion)) throw new DeploymentException("champion (name@version) is required.");
        var champion = ModelRef.Parse(doc.Champion, "champion");

        var shadows = new List<ShadowSpec>();
        foreach (var (s, i) in (doc.Shadows ?? []).Select((s, i) => (s, i)))
        {
            var what = $"shadows[{i}]";
            if (string.IsNullOrWhiteSpace(s.Model)) throw new DeploymentException($"{what}.model (name@version) is required.");
            var model = ModelRef.Parse(s.Model, $"{what}.model");
            var sample = s.Sample ?? 1.0;
            if (sample is <= 0 or > 1) throw new DeploymentException(Invariant($"{what}.sample {sample} must be in (0, 1]."));
            if (model == champion) throw new DeploymentException($"{what}.model {model} is the champion; a shadow is another model.");
            if (shadows.Any(x => x.Model == model)) throw new DeploymentException($"{what}.model {model} is listed twice.");
            shadows.Add(new ShadowSpec(model, sample));
        }

        CanarySpec? canary = null;
        if (doc.Canary is { } c)
        {
            if (string.IsNullOrWhiteSpace(c.Model)) throw new DeploymentException("canary.model (name@version) is required.");
            var model = ModelRef.Parse(c.Model, "canary.model");
            if (model == champion) throw new DeploymentException($"canary.model {model} is the champion; a canary serves another model.");
            if (c.Share is not { } share || share is <= 0 or >= 1)
                throw new DeploymentException(Invariant($"canary.share must be in (0, 1) (was {c.Share?.ToString(CultureInfo.InvariantCulture) ?? "missing"}); 0.1 serves a tenth of the entities."));
            if (string.IsNullOrWhiteSpace(c.Salt)) throw new DeploymentException("canary.salt is required: it decides which entities are in the arm (change it to draw another set).");
            canary = new CanarySpec(model, share, c.Salt);
        }

        FallbackSpec? fallback = null;
        if (doc.Fallback is { } f)
        {
            if (string.IsNullOrWhiteSpace(f.Model)) throw new DeploymentException("fallback.model (name@version) is required.");
            var model = ModelRef.Parse(f.Model, "fallback.model");
            if (model == champion) throw new DeploymentException($"fallback.model {model} is the champion; the fallback tier is another (cheaper) model.");
            if (f.EnterLagEvents is null && f.EnterEventAgeMs is null && f.OnError != true)
                throw new DeploymentException("fallback needs a trigger: enterLagEvents, enterEventAgeMs, or onError: true.");
            var exitLag = Exit(f.EnterLagEvents, f.ExitLagEvents, "LagEvents");
            var exitAge = Exit(f.EnterEventAgeMs, f.ExitEventAgeMs, "EventAgeMs");
            var dwell = f.MinDwellMs ?? 30_000;
            if (dwell < 0) throw new DeploymentException("fallback.minDwellMs must not be negative.");
            fallback = new FallbackSpec(model, f.EnterLagEvents, exitLag, f.EnterEventAgeMs, exitAge, dwell, f.OnError ?? false);
        }

        // The fallback may also be a shadow (it is scored as one only while the champion serves); a canary is only a canary.
        if (canary is not null && shadows.Any(s => s.Model == canary.Model))
            throw new DeploymentException($"{canary.Model} is both the canary and a shadow; a challenger has one of those roles.");
        return new DeploymentSpec(version, champion, shadows, canary, fallback, NullIfEmpty(doc.Previous) is { } p ? ModelRef.Parse(p, "previous") : null);
    }

    /// <summary>
    /// The next version with <paramref name="model"/> as champion: it leaves the role it had (canary, shadow), and the
    /// champion it replaces is kept as <see cref="Previous"/> for <see cref="Rollback"/>.
    /// </summary>
    public DeploymentSpec Promote(ModelRef model)
    {
        if (model == Champion) throw new DeploymentException($"{model} is already the champion of deployment v{Version}.");
        if (Fallback?.Model == model)
            throw new DeploymentException($"{model} is the fallback tier; promoting it would leave the deployment without one: change the fallback first.");
        return this with
        {
            Version = Version + 1,
            Champion = model,
            Previous = Champion,
            Canary = Canary?.Model == model ? null : Canary,
            Shadows = [.. Shadows.Where(s => s.Model != model)],
        };
    }

    /// <summary>The next version with the previous champion back (and the current one as <see cref="Previous"/>, so a second rollback undoes the first).</summary>
    public DeploymentSpec Rollback()
    {
        if (Previous is not { } previous) throw new DeploymentException($"deployment v{Version} records no previous champion to roll back to (model promote records it).");
        if (Fallback?.Model == previous)
            throw new DeploymentException($"{previous} is now the fallback tier; change the fallback before rolling back to it.");
        return this with
        {
            Version = Version + 1,
            Champion = previous,
            Previous = Champion,
            Canary = Canary?.Model == previous ? null : Canary,
            Shadows = [.. Shadows.Where(s => s.Model != previous)],
        };
    }

    /// <summary>The deployment as a deployment.yaml (what <see cref="Parse"/> reads back as this spec).</summary>
    public string ToYaml()
    {
        var w = new System.Text.StringBuilder();
        void Line(FormattableString text) => w.Append(text.ToString(CultureInfo.InvariantCulture)).Append('\n');
        Line($"version: {Version}");
        Line($"champion: {Champion}");
        if (Previous is { } p) Line($"previous: {p}");
        if (Canary is { } c)
        {
            Line($"canary:");
            Line($"  model: {c.Model}");
            Line($"  share: {c.Share:R}");
            Line($"  salt: '{c.Salt.Replace("'", "''", StringComparison.Ordinal)}'");
        }
        if (Shadows.Count > 0)
        {
            Line($"shadows:");
            foreach (var s in Shadows)
            {
                Line($"  - model: {s.Model}");
                if (s.Sample < 1) Line($"    sample: {s.Sample:R}");
            }
        }
        if (Fallback is { } f)
        {
            Line($"fallback:");
            Line($"  model: {f.Model}");
            if (f.EnterLagEvents is { } el) Line($"  enterLagEvents: {el}");
            if (f.ExitLagEvents is { } xl) Line($"  exitLagEvents: {xl}");
            if (f.EnterEventAgeMs is { } ea) Line($"  enterEventAgeMs: {ea}");
            if (f.ExitEventAgeMs is { } xa) Line($"  exitEventAgeMs: {xa}");
            Line($"  minDwellMs: {f.MinDwellMs}");
            if (f.OnError) Line($"  onError: true");
        }
        return w.ToString();
    }

    /// <summary>Writes the file whole or not at all (a temporary file beside it, then a rename), so a reader never sees half of it.</summary>
    public void Save(string path)
    {
        var temp = path + ".tmp";
        File.WriteAllText(temp, ToYaml());
        File.Move(temp, path, overwrite: true);
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    /// <summary>The exit budget of one signal: below the enter budget (hysteresis); by default half of it.</summary>
    private static long? Exit(long? enter, long? exit, string signal)
    {
        if (enter is null)
        {
            if (exit is not null) throw new DeploymentException($"fallback.exit{signal} is set without fallback.enter{signal}.");
            return null;
        }
        if (enter <= 0) throw new DeploymentException($"fallback.enter{signal} must be positive.");
        var value = exit ?? enter / 2;
        if (value < 0 || value >= enter)
            throw new DeploymentException(Invariant($"fallback.exit{signal} ({value}) must be below fallback.enter{signal} ({enter}), so the tier does not flap at the budget."));
        return value;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

/// <summary>deployment.yaml as written (camelCase keys; unknown keys are errors, with their line).</summary>
public sealed class DeploymentDocument
{
    public long? Version { get; set; }
    public string? Champion { get; set; }
    public List<ShadowDocument>? Shadows { get; set; }
    public CanaryDocument? Canary { get; set; }
    public FallbackDocument? Fallback { get; set; }
    /// <summary>The champion before the last promote (what rollback restores); written by <c>model promote</c>.</summary>
    public string? Previous { get; set; }
}

public sealed class ShadowDocument
{
    public string? Model { get; set; }
    public double? Sample { get; set; }
}

public sealed class CanaryDocument
{
    public string? Model { get; set; }
    public double? Share { get; set; }
    public string? Salt { get; set; }
}

public sealed class FallbackDocument
{
    public string? Model { get; set; }
    public long? EnterLagEvents { get; set; }
    public long? ExitLagEvents { get; set; }
    public long? EnterEventAgeMs { get; set; }
    public long? ExitEventAgeMs { get; set; }
    public long? MinDwellMs { get; set; }
    public bool? OnError { get; set; }
}
