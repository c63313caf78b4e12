using System.CommandLine;
using System.Globalization;

namespace StreamInference.Cli;

/// <summary>
/// <c>streaminference health</c>: asks a running processor's /healthz (or /readyz) and exits 0 when it
/// answers 2xx. Container health checks use it, so images need no curl or shell.
/// </summary>
public static class HealthCommand
{
    public static Command Create()
    {
        var url = new Option<string?>("--url") { Description = "Endpoint to ask (default: http://127.0.0.1:<Http:Port>/healthz, the port read from the same configuration as serve)." };
        var ready = new Option<bool>("--ready") { Description = "Ask /readyz (partitions assigned, model loaded) instead of /healthz (process alive)." };
        var timeout = new Option<int>("--timeout-ms") { Description = "Give up after this long.", DefaultValueFactory = _ => 3000 };
        var command = new Command("health", "Exit 0 when the processor on this host answers its health (or readiness) endpoint, 1 otherwise; for container health checks.")
        {
            url, ready, timeout,
        };
        command.SetAction(async (parse, ct) =>
        {
            var target = parse.GetValue(url);
            if (target is null)
            {
                var configuration = ProcessorConfiguration.Build(null, new Dictionary<string, string?>());
                var port = int.TryParse(configuration["Http:Port"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) && p > 0 ? p : 9464;
                target = $"http://127.0.0.1:{port}/{(parse.GetValue(ready) ? "readyz" : "healthz")}";
            }
            if (!Uri.TryCreate(target, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
            {
                await Console.Error.WriteLineAsync($"--url '{target}' is not an absolute http(s) URL.").ConfigureAwait(false);
                return 2;
            }
            using var http = new HttpClient { Timeout = TimeSpan.FromMilliseconds(Math.Max(1, parse.GetValue(timeout))) };
            try
            {
                using var response = await http.GetAsync(uri, ct).ConfigureAwait(false);
                var body = (await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false)).Trim();
                Console.WriteLine($"{uri}: {(int)response.StatusCode} {body}");
                return response.IsSuccessStatusCode ? 0 : 1;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                await Console.Error.WriteLineAsync($"{uri}: {(e is TaskCanceledException ? "no answer within the timeout" : e.Message)}").ConfigureAwait(false);
                return 1;
            }
        });
        return command;
    }
}
