using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;
using StreamInference.Cli;
using StreamInference.DevServices.Kafka;
using StreamInference.Infrastructure.Kafka.Commit;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Hosting;

/// <summary>The processor's registrations: what <c>serve</c>'s host is made of.</summary>
public static class StreamInferenceHosting
{
    /// <summary>
    /// Binds <see cref="ProcessorOptions"/> from <paramref name="configuration"/> (a key that matches no setting is an
    /// error), validates them once at start (<see cref="ProcessorOptionsValidation"/>, <c>ValidateOnStart</c>), and
    /// registers the processor and the hosted service that runs it under its supervisor.
    /// </summary>
    /// <param name="embeddedKafka">Dev services only: the cluster is the embedded one, whose exactly-once offsets need the mirror.</param>
    public static IServiceCollection AddStreamInference(this IServiceCollection services, IConfiguration configuration, IMetricFactory metrics,
        bool embeddedKafka = false)
    {
        services.AddOptions<ProcessorOptions>()
            .Configure(options => ProcessorConfiguration.Bind(configuration, options))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<ProcessorOptions>, ProcessorOptionsValidation>();
        // SIGTERM: stop consuming, drain and publish what is in flight, commit, close — within
        // Pipeline:ShutdownTimeoutMs plus what the delivery mode's last commit may take, plus a margin for
        // leaving the group; then the host gives up.
        services.AddOptions<HostOptions>().Configure<IOptionsMonitor<ProcessorOptions>>((host, processor) =>
            host.ShutdownTimeout = TimeSpan.FromMilliseconds(processor.CurrentValue.Pipeline.ShutdownTimeoutMs)
                                   + DeliveryMode.ShutdownAllowance(processor.CurrentValue.Kafka) + TimeSpan.FromSeconds(10));
        services.AddSingleton(sp =>
        {
            var loggers = sp.GetRequiredService<ILoggerFactory>();
            return new StreamProcessor(sp.GetRequiredService<IOptionsMonitor<ProcessorOptions>>(), loggers, metrics)
            {
                DecorateCommit = embeddedKafka ? MirroredTransactionalOffsets.Decorate(loggers.CreateLogger<MirroredTransactionalOffsets>()) : null,
            };
        });
        services.AddHostedService<ProcessorService>();
        return services;
    }
}

/// <summary><see cref="ProcessorOptionsValidator"/> as the options system runs it: every message names the setting to fix.</summary>
public sealed class ProcessorOptionsValidation : IValidateOptions<ProcessorOptions>
{
    public ValidateOptionsResult Validate(string? name, ProcessorOptions options)
    {
        var errors = ProcessorOptionsValidator.Validate(options, PathResolver.Resolve);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>Runs the processor (supervised) for the host's lifetime; a fatal error stops the host with exit code 1.</summary>
public sealed partial class ProcessorService(StreamProcessor processor, IHostApplicationLifetime lifetime, ILogger<ProcessorService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.Yield();
            await processor.RunSupervisedAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            // One line that says what to fix; the stack trace only with verbose logging (Logging:LogLevel:Default=Debug).
            Log.Fatal(log, Secrets.RedactText(e.Message), log.IsEnabled(LogLevel.Debug) ? e : null);
            Environment.ExitCode = 1;
        }
        finally
        {
            lifetime.StopApplication();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Critical, Message = "Processor stopped: {Reason}")]
        public static partial void Fatal(ILogger logger, string reason, Exception? e);
    }
}
