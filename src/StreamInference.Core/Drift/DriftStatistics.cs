namespace StreamInference.Core.Drift;

/// <summary>
/// Distribution-comparison statistics over binned distributions. <c>expected</c> is the reference
/// (training) share per bin, <c>observed</c> the live counts per bin; both use the same bins.
/// Pure functions, no allocation.
/// </summary>
public static class DriftStatistics
{
    /// <summary>Share used in place of an empty bin's share in PSI (the usual convention; keeps the log finite).</summary>
    public const double PsiFloor = 1e-4;

    /// <summary>Population stability index: Σ (q − p) · ln(q / p), empty-bin shares floored at <see cref="PsiFloor"/>.</summary>
    public static double Psi(ReadOnlySpan<double> expected, ReadOnlySpan<long> observed)
    {
        var n = Total(observed);
        if (n == 0) return double.NaN;
        var psi = 0.0;
        for (var i = 0; i < expected.Length; i++)
        {
            var p = Math.Max(expected[i], PsiFloor);
            var q = Math.Max(observed[i] / (double)n, PsiFloor);
            psi += (q - p) * Math.Log(q / p);
        }
        return psi;
    }

    /// <summary>Jensen–Shannon distance (square root of the divergence, base 2): 0 identical … 1 disjoint.</summary>
    public static double JensenShannonDistance(ReadOnlySpan<double> expected, ReadOnlySpan<long> observed)
    {
        var n = Total(observed);
        if (n == 0) return double.NaN;
        var divergence = 0.0;
        for (var i = 0; i < expected.Length; i++)
        {
            var p = expected[i];
            var q = observed[i] / (double)n;
            var m = 0.5 * (p + q);
            if (p > 0) divergence += 0.5 * p * Math.Log2(p / m);
            if (q > 0) divergence += 0.5 * q * Math.Log2(q / m);
        }
        return Math.Sqrt(Math.Max(0, divergence));
    }

    /// <summary>
    /// Kolmogorov–Smirnov statistic on the binned CDFs: the largest |F_ref − F_live| over bin edges.
    /// It never exceeds the KS statistic of the raw samples, and falls short of it by at most the
    /// largest share either distribution has in one bin.
    /// </summary>
    public static double KsBinned(ReadOnlySpan<double> expected, ReadOnlySpan<long> observed)
    {
        var n = Total(observed);
        if (n == 0) return double.NaN;
        double cdfP = 0, cdfQ = 0, d = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            cdfP += expected[i];
            cdfQ += observed[i] / (double)n;
            d = Math.Max(d, Math.Abs(cdfP - cdfQ));
        }
        return d;
    }

    /// <summary>
    /// Asymptotic p-value of a two-sample KS statistic <paramref name="d"/> for samples of sizes
    /// <paramref name="n"/> and <paramref name="m"/> (Kolmogorov distribution with Stephens' small-sample
    /// correction). Applied to the binned statistic the test is conservative: false alarms stay below alpha.
    /// </summary>
    public static double KsPValue(double d, long n, long m)
    {
        if (n <= 0 || m <= 0 || double.IsNaN(d)) return double.NaN;
        var ne = n * (double)m / (n + m);
        var sqrt = Math.Sqrt(ne);
        var lambda = (sqrt + 0.12 + 0.11 / sqrt) * d;
        return KolmogorovQ(lambda);
    }

    /// <summary>Q(λ) = 2 Σ_{j≥1} (−1)^{j−1} exp(−2 j² λ²), the Kolmogorov survival function.</summary>
    public static double KolmogorovQ(double lambda)
    {
        if (lambda < 0.2) return 1.0;
        var sum = 0.0;
        var sign = 1.0;
        for (var j = 1; j <= 100; j++)
        {
            var term = sign * Math.Exp(-2.0 * j * j * lambda * lambda);
            sum += term;
            if (Math.Abs(term) < 1e-12 * Math.Abs(sum)) break;
            sign = -sign;
        }
        return Math.Clamp(2.0 * sum, 0.0, 1.0);
    }

    /// <summary>
    /// Chi-squared test of homogeneity between the reference (<paramref name="expected"/> shares of
    /// <paramref name="referenceCount"/> rows) and the live counts: a 2 × k table, bins empty in both
    /// dropped. Returns the statistic and its p-value with (k − 1) degrees of freedom.
    /// </summary>
    public static (double Statistic, double PValue, int DegreesOfFreedom) ChiSquared(ReadOnlySpan<double> expected, long referenceCount, ReadOnlySpan<long> observed)
    {
        var n = Total(observed);
        if (n == 0 || referenceCount <= 0) return (double.NaN, double.NaN, 0);
        var total = (double)(n + referenceCount);
        var statistic = 0.0;
        var bins = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            var reference = expected[i] * referenceCount;
            var live = (double)observed[i];
            var column = reference + live;
            if (column <= 0) continue;
            bins++;
            var eRef = column * referenceCount / total;
            var eLive = column * n / total;
            statistic += (reference - eRef) * (reference - eRef) / eRef + (live - eLive) * (live - eLive) / eLive;
        }
        var dof = bins - 1;
        return dof < 1 ? (0, 1, 0) : (statistic, ChiSquaredSurvival(statistic, dof), dof);
    }

    /// <summary>P(X ≥ x) for X ~ χ²(k): the regularized upper incomplete gamma Q(k/2, x/2).</summary>
    public static double ChiSquaredSurvival(double x, int k) => x <= 0 ? 1.0 : UpperRegularizedGamma(k / 2.0, x / 2.0);

    /// <summary>Regularized upper incomplete gamma Q(a, x): series for x &lt; a + 1, continued fraction otherwise.</summary>
    public static double UpperRegularizedGamma(double a, double x)
    {
        if (x <= 0) return 1.0;
        var logPrefix = -x + a * Math.Log(x) - LogGamma(a);
        if (x < a + 1)
        {
            // P(a, x) = e^{-x} x^a / Γ(a) Σ x^n / (a (a+1) … (a+n))
            double term = 1.0 / a, sum = term, ap = a;
            for (var i = 0; i < 1000; i++)
            {
                ap += 1;
                term *= x / ap;
                sum += term;
                if (Math.Abs(term) < Math.Abs(sum) * 1e-15) break;
            }
            return Math.Clamp(1.0 - sum * Math.Exp(logPrefix), 0.0, 1.0);
        }
        // Lentz's method for the continued fraction of Q(a, x).
        const double tiny = 1e-300;
        double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
        for (var i = 1; i < 1000; i++)
        {
            var an = -i * (i - a);
            b += 2;
            d = an * d + b;
            if (Math.Abs(d) < tiny) d = tiny;
            c = b + an / c;
            if (Math.Abs(c) < tiny) c = tiny;
            d = 1 / d;
            var delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-15) break;
        }
        return Math.Clamp(Math.Exp(logPrefix) * h, 0.0, 1.0);
    }

    /// <summary>ln Γ(x) for x &gt; 0 (Lanczos approximation, g = 7, n = 9).</summary>
    public static double LogGamma(double x)
    {
        ReadOnlySpan<double> c =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
            -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        if (x < 0.5) return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        x -= 1;
        var a = c[0];
        var t = x + 7.5;
        for (var i = 1; i < 9; i++) a += c[i] / (x + i);
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(a);
    }

    private static long Total(ReadOnlySpan<long> counts)
    {
        long n = 0;
        foreach (var c in counts) n += c;
        return n;
    }
}
