namespace StreamInference.Batch.Synthetic;

public enum PaymentChannel { POS, ONLINE, ATM }

/// <summary>One synthetic card payment, with its ground-truth label.</summary>
public sealed record PaymentEvent(
    string EventId,
    DateTimeOffset EventTime,
    string CardId,
    string MerchantId,
    double Amount,
    string Currency,
    PaymentChannel Channel,
    string Country,
    bool IsForeign,
    bool IsFraud);

public sealed record CardProfile(string Id, string HomeCountry, double TypicalAmount, double TransactionsPerDay);

public sealed record MerchantProfile(string Id, string Country, double FraudRate);

/// <summary>
/// Deterministic synthetic card payments with realistic structure: cards with a home country, a
/// typical spend and a daily rate; merchants with a country and a fraud rate (a few are risky);
/// fraud that spends far above the card's typical amount, mostly online, abroad and at night. The
/// fraud signal is visible to the example feature set (amount vs the card's average, channel,
/// foreignness, merchant fraud rate), so the example model learns something real.
/// </summary>
public sealed class PaymentGenerator
{
    private static readonly string[] Countries = ["DE", "FR", "NL", "ES", "IT", "BE", "PL", "SE", "US", "GB"];
    private Random _random;
    private long _sequence;

    /// <param name="seed">The world: cards and merchants (and, without <paramref name="streamSeed"/>, the events too).</param>
    /// <param name="streamSeed">When given, the events are drawn from their own seed in the world of <paramref name="seed"/>:
    /// live traffic in the training history's world without repeating the history.</param>
    public PaymentGenerator(int seed = 42, int cards = 5000, int merchants = 500, int? streamSeed = null)
    {
        _random = new Random(seed);
        Seed = streamSeed ?? seed;
        var cardList = new CardProfile[cards];
        for (var i = 0; i < cards; i++)
        {
            cardList[i] = new CardProfile(
                $"card-{i:D6}",
                Countries[Math.Min(Countries.Length - 1, (int)(Math.Abs(Normal()) * 2.5))],
                Math.Round(Math.Exp(3.2 + 0.7 * Normal()), 2),
                Math.Max(0.2, Math.Exp(0.8 + 0.6 * Normal())));
        }
        var merchantList = new MerchantProfile[merchants];
        for (var i = 0; i < merchants; i++)
        {
            var risky = _random.NextDouble() < 0.05;
            merchantList[i] = new MerchantProfile(
                $"merchant-{i:D5}",
                Countries[_random.Next(Countries.Length)],
                risky ? 0.05 + 0.15 * _random.NextDouble() : 0.002 + 0.01 * _random.NextDouble());
        }
        Cards = cardList;
        Merchants = merchantList;
        if (streamSeed is { } stream) _random = new Random(stream);
    }

    public int Seed { get; }

    /// <summary>
    /// When set, the world has shifted: amounts are about 2.2× higher and the channel mix moves towards
    /// online payments (what a new merchant segment or a currency change would do). Used to show drift.
    /// </summary>
    public bool Shifted { get; set; }
    public IReadOnlyList<CardProfile> Cards { get; }
    public IReadOnlyList<MerchantProfile> Merchants { get; }

    /// <summary>
    /// The next event. <paramref name="time"/> is its event time; when <paramref name="shapeHourOfDay"/>
    /// is set, the hour is redrawn from the legitimate or fraudulent daily pattern (for histories). Otherwise
    /// the event keeps its time (live traffic) and is drawn from the history's distribution given that time's
    /// hour: the merchant (risky merchants see more of the night's fraud), then whether it is fraud. The live
    /// world is the history's world, hour by hour.
    /// </summary>
    public PaymentEvent Next(DateTimeOffset time, bool shapeHourOfDay = false)
    {
        var card = Cards[_random.Next(Cards.Count)];
        var liveHour = time.UtcDateTime.Hour;
        var merchant = shapeHourOfDay ? Merchants[_random.Next(Merchants.Count)] : MerchantAt(liveHour, _random.NextDouble());
        var prior = Math.Min(1, merchant.FraudRate * 2.0);
        var fraud = _random.NextDouble() < (shapeHourOfDay ? prior : FraudGivenHour(prior, liveHour));
        double amount;
        PaymentChannel channel;
        bool foreign;
        int hour;
        if (fraud)
        {
            amount = card.TypicalAmount * Math.Exp(1.3 + 0.7 * Normal());
            channel = _random.NextDouble() < 0.7 ? PaymentChannel.ONLINE : _random.NextDouble() < 0.5 ? PaymentChannel.ATM : PaymentChannel.POS;
            foreign = _random.NextDouble() < 0.55;
            hour = _random.NextDouble() < 0.6 ? _random.Next(0, 6) : _random.Next(0, 24);
        }
        else
        {
            amount = card.TypicalAmount * Math.Exp(0.45 * Normal() + (Shifted ? 0.8 : 0));
            var c = _random.NextDouble();
            var pos = Shifted ? 0.40 : 0.68;
            channel = c < pos ? PaymentChannel.POS : c < 0.95 ? PaymentChannel.ONLINE : PaymentChannel.ATM;
            foreign = _random.NextDouble() < 0.06;
            hour = (int)Math.Clamp(14 + 4 * Normal(), 0, 23);
        }
        if (shapeHourOfDay)
            time = new DateTimeOffset(time.UtcDateTime.Date.AddHours(hour).AddMilliseconds(_random.Next(3_600_000)), TimeSpan.Zero);
        var country = foreign ? Countries[(Array.IndexOf(Countries, card.HomeCountry) + 1 + _random.Next(Countries.Length - 1)) % Countries.Length] : card.HomeCountry;
        var seq = _sequence++;
        return new PaymentEvent($"evt-{Seed}-{seq:D9}", time, card.Id, merchant.Id, Math.Round(amount, 2), "EUR", channel, country, foreign, fraud);
    }

    // Per hour of the day: cumulative P(merchant | hour) ∝ P(hour | merchant), built on first use.
    private readonly double[]?[] _merchantsByHour = new double[24][];

    /// <summary>The merchant of a live event at <paramref name="hour"/>, by inverse CDF of P(merchant | hour) at <paramref name="u"/>.</summary>
    private MerchantProfile MerchantAt(int hour, double u)
    {
        var cumulative = _merchantsByHour[hour];
        if (cumulative is null)
        {
            cumulative = new double[Merchants.Count];
            var total = 0.0;
            for (var m = 0; m < Merchants.Count; m++)
            {
                var prior = Math.Min(1, Merchants[m].FraudRate * 2.0);
                total += prior * FraudHourShare(hour) + (1 - prior) * LegitimateHourShare(hour);
                cumulative[m] = total;
            }
            for (var m = 0; m < cumulative.Length; m++) cumulative[m] /= total;
            _merchantsByHour[hour] = cumulative;
        }
        var i = Array.BinarySearch(cumulative, u);
        return Merchants[Math.Min(i < 0 ? ~i : i, Merchants.Count - 1)];
    }

    /// <summary>Share of fraudulent payments in an hour: 60 % in 0..5, the rest spread over the day.</summary>
    public static double FraudHourShare(int hour) => (hour < 6 ? 0.6 / 6 : 0) + 0.4 / 24;

    /// <summary>P(fraud | hour) by Bayes from the prior and the two daily patterns drawn in <see cref="Next"/>.</summary>
    public static double FraudGivenHour(double prior, int hour)
    {
        var fraudHour = FraudHourShare(hour);
        var legitHour = LegitimateHourShare(hour);
        var joint = prior * fraudHour;
        return joint / (joint + (1 - prior) * legitHour);
    }

    /// <summary>Share of legitimate payments in an hour: (int)clamp(14 + 4 Z, 0, 23) for a standard normal Z.</summary>
    public static double LegitimateHourShare(int hour)
    {
        static double Phi(double x) => 0.5 * (1 + Erf(x / Math.Sqrt(2)));
        var upper = hour == 23 ? 1.0 : Phi((hour + 1 - 14) / 4.0);
        var lower = hour == 0 ? 0.0 : Phi((hour - 14) / 4.0);
        return upper - lower;
    }

    /// <summary>Error function (Abramowitz and Stegun 7.1.26, |error| below 1.5e-7).</summary>
    private static double Erf(double x)
    {
        var sign = Math.Sign(x);
        x = Math.Abs(x);
        var t = 1 / (1 + 0.3275911 * x);
        var y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-x * x);
        return sign * y;
    }

    private double Normal()
    {
        // Box–Muller; deterministic for a given seed.
        var u1 = 1.0 - _random.NextDouble();
        var u2 = _random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
