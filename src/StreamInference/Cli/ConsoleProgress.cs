using System.Diagnostics;
using System.Globalization;

namespace StreamInference.Cli;

/// <summary>
/// A progress bar on stderr with rate and ETA: redrawn in place on a terminal, one line every few
/// seconds when stderr is redirected (CI logs). stdout stays reserved for the command's JSON result.
/// </summary>
public sealed class ConsoleProgress : IProgress<long>, IDisposable
{
    private readonly string _label;
    private readonly string _unit;
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Lock _gate = new();
    private long _total;
    private long _done;
    private long _lastDrawMs = -1_000_000;
    private bool _closed;

    public ConsoleProgress(string label, long total, string unit = "events")
    {
        _label = label;
        _total = total;
        _unit = unit;
    }

    public void SetTotal(long total) => _total = total;

    public void Report(long value)
    {
        lock (_gate)
        {
            _done = value;
            var now = _clock.ElapsedMilliseconds;
            if (now - _lastDrawMs < (_interactive ? 200 : 5_000)) return;
            _lastDrawMs = now;
            Draw(final: false);
        }
    }

    private void Draw(bool final)
    {
        var seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-3);
        var rate = _done / seconds;
        string line;
        if (_total > 0)
        {
            var fraction = Math.Clamp(_done / (double)_total, 0, 1);
            const int width = 24;
            var filled = (int)Math.Round(fraction * width);
            var eta = rate > 0 && !final ? TimeSpan.FromSeconds((_total - _done) / rate) : TimeSpan.Zero;
            var tail = final
                ? string.Create(CultureInfo.InvariantCulture, $"in {seconds:N1}s")
                : string.Create(CultureInfo.InvariantCulture, $"ETA {(int)eta.TotalMinutes:D2}:{eta.Seconds:D2}");
            line = string.Create(CultureInfo.InvariantCulture,
                $"{_label} [{new string('#', filled)}{new string('.', width - filled)}] {fraction,4:P0} {_done:N0}/{_total:N0} {_unit}  {rate:N0}/s  {tail}");
        }
        else
        {
            line = string.Create(CultureInfo.InvariantCulture, $"{_label} {_done:N0} {_unit}  {rate:N0}/s  {seconds:N1}s");
        }
        if (_interactive) Console.Error.Write("\r" + line.PadRight(Math.Max(line.Length, 100)));
        else Console.Error.WriteLine(line);
        if (final && _interactive) Console.Error.WriteLine();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
            if (_total > 0) _done = Math.Max(_done, _total);
            Draw(final: true);
        }
    }
}
