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
        var url = new Option<string?>("--url") { Description = "Endpoint to ask (default: http://127.0.0.1:<port>/healthz)." };
        var port = new Option<int?>("--port") { Description = "Port of the processor's endpoints (default: Http:Port from appsettings.json and STREAMINFERENCE__Http__Port, as serve reads them; pass it when serve got its port from a flag or --config)." };
        var config = new Option<string?>("--config") { Description = "The appsettings-style file serve was started with, to read Http:Port from." };
        var ready = new Option<bool>("--ready") { Description = "Ask /readyz (partitions assigned, model loaded) instead of /healthz (process alive)." };
        var timeout = new Option<int>("--timeout-ms") { Description = "Give up after this long.", DefaultValueFactory = _ => 3000 };
        var command = new Command("health", "Exit 0 when the processor on this host answers its health (or readiness) endpoint, 1 otherwise; for container health checks.")
        {
            url, port, config, ready, timeout,
        };
        command.SetAction(async (parse, ct) =>
        {
            var target = parse.GetValue(url);
            if (target is null)
            {
                var number = parse.GetValue(port);
                if (number is null)
                {
                    string? configured;
                    try
                    {
                        configured = ProcessorConfiguration.Build(parse.GetValue(config), new Dictionary<string, string?>())["Http:Port"];
                    }
                    catch (Exception e) when (e is FileNotFoundException or InvalidDataException or FormatException)
                    {
                        await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
                        return 2;
                    }
                    number = configured is null ? 9464 : int.TryParse(configured, NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) ? p : -1;
                }
                if (number is < 1 or > 65_535)
                {
                    await Console.Error.WriteLineAsync($"Http:Port is {number}: no fixed port to ask (0 picks a free one); pass --port or --url.").ConfigureAwait(false);
                    return 2;
                }
                target = $"http://127.0.0.1:{number}/{(parse.GetValue(ready) ? "readyz" : "healthz")}";
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
