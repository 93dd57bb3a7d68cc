using Perfolizer.Mathematics.Common;

namespace SpecVm.Benchmarks.Cli;

/// <summary>What the interval of a ratio says: a difference only when it excludes 1.</summary>
internal enum RatioVerdict
{
    /// <summary>Fewer than two repeats on a side: no interval, no claim.</summary>
    Unknown,

    /// <summary>The interval contains 1: no evidence of a difference.</summary>
    NoDifference,

    /// <summary>The whole interval is above 1: B is faster.</summary>
    Faster,

    /// <summary>The whole interval is below 1: B is slower.</summary>
    Slower,
}

/// <summary>A ratio B/A of two throughputs with its confidence interval.</summary>
/// <param name="Estimate">The ratio of the geometric means of the repeats.</param>
/// <param name="Lower">Lower bound of the interval.</param>
/// <param name="Upper">Upper bound of the interval.</param>
internal sealed record RatioInterval(double Estimate, double Lower, double Upper)
{
    /// <summary>The confidence level of the intervals <c>compare</c> shows.</summary>
    public const double DefaultLevel = 0.95;

    /// <summary>Faster, slower, or no difference, by whether the interval excludes 1.</summary>
    public RatioVerdict Verdict => Lower > 1 ? RatioVerdict.Faster : Upper < 1 ? RatioVerdict.Slower : RatioVerdict.NoDifference;

    /// <summary>
    /// The interval of B/A from the repeats of each side (throughputs, so positive), or null with fewer than two
    /// repeats on a side. Throughput ratios are multiplicative, so the interval is Welch's for the difference of the
    /// mean logarithms (unequal variances, Welch–Satterthwaite degrees of freedom), taken back with exp: with the
    /// two to seven repeats a scaling run has, Student's t is what keeps the interval honest (wide) where a normal
    /// approximation or a bootstrap would be overconfident. The t quantile and the interval are Perfolizer's
    /// <see cref="ConfidenceIntervalEstimator"/> (the one BenchmarkDotNet's own CI column uses), given the
    /// effective sample size df + 1.
    /// </summary>
    /// <param name="baseline">Repeats of A (operations per second).</param>
    /// <param name="candidate">Repeats of B.</param>
    /// <param name="level">Confidence level, e.g. 0.95.</param>
    public static RatioInterval? Of(IReadOnlyList<double> baseline, IReadOnlyList<double> candidate, double level = DefaultLevel)
    {
        if (baseline.Count < 2 || candidate.Count < 2 || baseline.Any(x => !(x > 0)) || candidate.Any(x => !(x > 0)))
        {
            return null;
        }

        (double meanA, double varA) = LogMoments(baseline);
        (double meanB, double varB) = LogMoments(candidate);
        double seA = varA / baseline.Count, seB = varB / candidate.Count;
        double standardError = Math.Sqrt(seA + seB);
        double shift = meanB - meanA;
        if (standardError == 0)
        {
            return new RatioInterval(Math.Exp(shift), Math.Exp(shift), Math.Exp(shift));
        }

        // Welch–Satterthwaite: the degrees of freedom of a difference of two means with unequal variances.
        double df = (seA + seB) * (seA + seB) / ((seA * seA / (baseline.Count - 1)) + (seB * seB / (candidate.Count - 1)));
        ConfidenceInterval ci = new ConfidenceIntervalEstimator(df + 1, shift, standardError).ConfidenceInterval(new ConfidenceLevel(level));
        return new RatioInterval(Math.Exp(shift), Math.Exp(ci.Lower), Math.Exp(ci.Upper));
    }

    private static (double Mean, double Variance) LogMoments(IReadOnlyList<double> values)
    {
        double mean = values.Average(Math.Log);
        double variance = values.Sum(v => (Math.Log(v) - mean) * (Math.Log(v) - mean)) / (values.Count - 1);
        return (mean, variance);
    }
}
