namespace SpecVm.Scaling;

/// <summary>A Universal Scalability Law fit: C(N) = N / (1 + σ(N−1) + κN(N−1)).</summary>
public sealed class UslFit
{
    /// <summary>Workload name (empty for a bare fit).</summary>
    public string Workload { get; set; } = string.Empty;

    /// <summary>Strategy name.</summary>
    public string Strategy { get; set; } = string.Empty;

    /// <summary>"predicted" for a fit to predicted points in a result that holds both modes; null otherwise.</summary>
    public string? Mode { get; set; }

    /// <summary>Thread counts used.</summary>
    public int Points { get; set; }

    /// <summary>Contention σ, or null when no fit was made.</summary>
    public double? Sigma { get; set; }

    /// <summary>Coherency κ, or null when no fit was made.</summary>
    public double? Kappa { get; set; }

    /// <summary>Throughput with one thread, X(1).</summary>
    public double? SingleThreadOpsPerSecond { get; set; }

    /// <summary>The thread count of peak throughput, sqrt((1−σ)/κ); null when κ is 0 (no peak) or no fit.</summary>
    public double? PeakThreads { get; set; }

    /// <summary>Why there is no fit, or what was clamped; null for a clean fit.</summary>
    public string? Note { get; set; }

    /// <summary>True when σ and κ were fitted.</summary>
    public bool HasFit => Sigma.HasValue && Kappa.HasValue;

    /// <summary>Predicted throughput at <paramref name="threads"/> threads (needs a fit).</summary>
    /// <param name="threads">N.</param>
    public double Predict(double threads)
    {
        if (!HasFit || SingleThreadOpsPerSecond is not double x1)
        {
            throw new InvalidOperationException("No USL fit to predict from.");
        }

        return x1 * threads / (1 + (Sigma!.Value * (threads - 1)) + (Kappa!.Value * threads * (threads - 1)));
    }
}

/// <summary>
/// Fits the Universal Scalability Law (Gunther) by least squares: with X(1) measured, x = N−1 and
/// y = N / C(N) − 1 = κx² + (σ+κ)x, a regression without intercept; negative coefficients are rejected (clamped to
/// 0 and the other refitted), as docs/references.md ("The Universal Scalability Law") describes.
/// </summary>
public static class Usl
{
    /// <summary>The fewest distinct thread counts (one of them 1) a fit needs.</summary>
    public const int MinPoints = 3;

    /// <summary>Fits σ and κ to (threads, throughput) points; the result's Note explains a missing fit.</summary>
    /// <param name="points">Thread counts and their throughput; one point must have 1 thread.</param>
    public static UslFit Fit(IReadOnlyList<(int Threads, double OpsPerSecond)> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        var distinct = points.GroupBy(p => p.Threads).Select(g => (Threads: g.Key, Ops: g.Average(p => p.OpsPerSecond))).OrderBy(p => p.Threads).ToList();
        var fit = new UslFit { Points = distinct.Count };
        if (distinct.Count < MinPoints)
        {
            fit.Note = $"too few points ({distinct.Count}) for a USL fit; it needs {MinPoints} or more thread counts";
            return fit;
        }

        var one = distinct.Find(p => p.Threads == 1);
        if (one.Threads != 1 || !(one.Ops > 0))
        {
            fit.Note = "no positive 1-thread throughput to normalise by; no USL fit";
            return fit;
        }

        fit.SingleThreadOpsPerSecond = one.Ops;
        double sx2 = 0, sx3 = 0, sx4 = 0, sxy = 0, sx2y = 0;
        var xy = new List<(double X, double Y)>();
        foreach (var (n, ops) in distinct)
        {
            if (n < 1 || !(ops > 0))
            {
                continue;
            }

            double c = ops / one.Ops;
            double x = n - 1;
            double y = (n / c) - 1;
            xy.Add((x, y));
            sx2 += x * x;
            sx3 += x * x * x;
            sx4 += x * x * x * x;
            sxy += x * y;
            sx2y += x * x * y;
        }

        // Normal equations for y = a x² + b x: [Σx⁴ Σx³; Σx³ Σx²] [a; b] = [Σx²y; Σxy], with a = κ and b = σ + κ.
        double det = (sx4 * sx2) - (sx3 * sx3);
        double kappa, sigma;
        if (Math.Abs(det) < 1e-12)
        {
            fit.Note = "thread counts too few or degenerate for a USL fit";
            return fit;
        }

        double a = ((sx2y * sx2) - (sx3 * sxy)) / det;
        double b = ((sx4 * sxy) - (sx3 * sx2y)) / det;
        kappa = a;
        sigma = b - a;
        var notes = new List<string>();
        if (kappa < 0)
        {
            // y = σx only: σ = Σxy / Σx².
            kappa = 0;
            sigma = sxy / sx2;
            notes.Add("κ < 0 rejected (set to 0, σ refitted)");
        }

        if (sigma < 0)
        {
            // y = κ(x² + x): κ = Σ(x²+x)y / Σ(x²+x)².
            sigma = 0;
            double num = 0, den = 0;
            foreach (var (x, y) in xy)
            {
                double z = (x * x) + x;
                num += z * y;
                den += z * z;
            }

            kappa = Math.Max(0, den > 0 ? num / den : 0);
            notes.Add("σ < 0 rejected (set to 0, κ refitted)");
        }

        fit.Sigma = sigma;
        fit.Kappa = kappa;
        fit.PeakThreads = kappa > 0 && sigma < 1 ? Math.Sqrt((1 - sigma) / kappa) : null;
        fit.Note = notes.Count > 0 ? string.Join("; ", notes) : null;
        return fit;
    }
}
