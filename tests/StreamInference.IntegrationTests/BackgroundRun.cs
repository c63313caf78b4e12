namespace StreamInference.IntegrationTests;

/// <summary>
/// Work that runs in the background until stopped, such as a <see cref="PredictionAudit"/> reading the
/// output topics while a test runs: stopping cancels it and waits for it to end.
/// </summary>
public sealed class BackgroundRun : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _work;
    private Task? _stopped;

    private BackgroundRun(Func<CancellationToken, Task> work) => _work = work(_stop.Token);

    public static BackgroundRun Start(Func<CancellationToken, Task> work) => new(work);

    /// <summary>Cancels the work and waits for it; its error, if it failed.</summary>
    public Task StopAsync() => _stopped ??= StopOnceAsync();

    private async Task StopOnceAsync()
    {
        await _stop.CancelAsync();
        await _work;
    }

    /// <summary>Stops the work if the test did not (it failed before): an error of the work then is not the test's.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stopped is null)
        {
            try
            {
                await StopAsync();
            }
            catch (Exception)
            {
                // The test's own failure is what it reports.
            }
        }
        _stop.Dispose();
    }
}
