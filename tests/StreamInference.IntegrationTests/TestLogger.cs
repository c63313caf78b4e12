using Microsoft.Extensions.Logging;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Routes processor logs (information and up, partition assignment included) into the test output, and
/// keeps the last lines for failure messages (<see cref="Tail"/>).
/// </summary>
public sealed class TestLoggerFactory(ITestOutputHelper output) : ILoggerFactory
{
    private const int KeepLines = 200;
    private readonly Queue<string> _lines = new();

    public ILogger CreateLogger(string categoryName) => new TestLogger(this, categoryName);
    public void AddProvider(ILoggerProvider provider) { }
    public void Dispose() { }

    /// <summary>The last <paramref name="lines"/> lines logged.</summary>
    public string Tail(int lines = 40)
    {
        lock (_lines) return string.Join(Environment.NewLine, _lines.TakeLast(lines));
    }

    private void Write(string line)
    {
        lock (_lines)
        {
            _lines.Enqueue(line);
            while (_lines.Count > KeepLines) _lines.Dequeue();
        }
        try
        {
            output.WriteLine(line);
        }
        catch (InvalidOperationException)
        {
            // The test already finished.
        }
    }

    private sealed class TestLogger(TestLoggerFactory factory, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            factory.Write($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}");
        }
    }
}
