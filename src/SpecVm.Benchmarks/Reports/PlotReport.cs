using ScottPlot;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>Plots (PNG and SVG) with ScottPlot: throughput vs threads, per-thread efficiency, speculative outcomes.</summary>
internal static class PlotReport
{
    private const int Width = 900;
    private const int Height = 560;

    public static IReadOnlyList<PlotFile> WriteAll(ScalingResult r, string dir)
    {
        var files = new List<PlotFile>();
        foreach (var (family, series) in Series.ByFamily(r))
        {
            files.Add(Throughput(family, series, dir));
            if (series.Any(s => s.Points.Count > 1))
            {
                files.Add(Efficiency(family, series, dir));
            }
        }

        PlotFile? aborts = SpeculativeOutcomes(r, dir);
        if (aborts != null)
        {
            files.Add(aborts);
        }

        return files;
    }

    private static PlotFile Throughput(string family, List<(string Label, List<ScalingPoint> Points)> series, string dir)
    {
        var plt = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int i = 0;
        int maxThreads = series.SelectMany(s => s.Points).Max(p => p.Threads);
        foreach (var (label, points) in series)
        {
            Color color = palette.GetColor(i++);
            double[] xs = points.Select(p => (double)p.Threads).ToArray();
            double[] ys = points.Select(p => p.OpsPerSecond).ToArray();
            double[] sd = points.Select(p => p.OpsPerSecondStdDev).ToArray();
            var line = plt.Add.Scatter(xs, ys, color);
            line.LegendText = label;
            line.LineWidth = label.StartsWith("native", StringComparison.Ordinal) ? 3 : 2;
            line.MarkerSize = 8;
            var err = plt.Add.ErrorBar(xs, ys, sd);
            err.LineStyle.Color = color;

            ScalingPoint? one = points.Find(p => p.Threads == 1);
            if (one != null && maxThreads > 1)
            {
                var ideal = plt.Add.Line(1, one.OpsPerSecond, maxThreads, one.OpsPerSecond * maxThreads);
                ideal.LineColor = color.WithAlpha(0.5);
                ideal.LinePattern = LinePattern.Dotted;
                ideal.LineWidth = 1;
            }
        }

        string unit = series[0].Points[0].OperationUnit;
        plt.Title($"{family}: throughput vs threads (dotted: linear from 1 thread)");
        plt.XLabel("threads (CPUs)");
        plt.YLabel($"{unit} per second");
        plt.Axes.SetLimitsX(0.5, maxThreads + 0.5);
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        plt.Axes.AutoScaleY();
        plt.Axes.SetLimitsY(0, plt.Axes.GetLimits().Top * 1.05);
        plt.ShowLegend(Alignment.UpperLeft);
        return Save(plt, dir, $"throughput-{family}", $"{family}: throughput vs threads (dotted: linear from 1 thread)");
    }

    private static PlotFile Efficiency(string family, List<(string Label, List<ScalingPoint> Points)> series, string dir)
    {
        var plt = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int i = 0;
        int maxThreads = series.SelectMany(s => s.Points).Max(p => p.Threads);
        foreach (var (label, points) in series)
        {
            Color color = palette.GetColor(i++);
            ScalingPoint? one = points.Find(p => p.Threads == 1);
            if (one == null || one.OpsPerSecond <= 0)
            {
                continue;
            }

            double[] xs = points.Select(p => (double)p.Threads).ToArray();
            double[] ys = points.Select(p => p.OpsPerSecond / (p.Threads * one.OpsPerSecond)).ToArray();
            var line = plt.Add.Scatter(xs, ys, color);
            line.LegendText = label;
            line.LineWidth = 2;
            line.MarkerSize = 8;
        }

        var ideal = plt.Add.HorizontalLine(1);
        ideal.LinePattern = LinePattern.Dotted;
        ideal.LineColor = Colors.Gray;
        ideal.LegendText = "linear";
        plt.Title($"{family}: per-thread efficiency X(N) / (N·X(1))");
        plt.XLabel("threads (CPUs)");
        plt.YLabel("efficiency");
        plt.Axes.SetLimitsX(0.5, maxThreads + 0.5);
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        plt.Axes.AutoScaleY();
        plt.Axes.SetLimitsY(0, Math.Max(1.2, plt.Axes.GetLimits().Top * 1.05));
        plt.ShowLegend(Alignment.LowerLeft);
        return Save(plt, dir, $"efficiency-{family}", $"{family}: per-thread efficiency (1 = linear scaling)");
    }

    private static PlotFile? SpeculativeOutcomes(ScalingResult r, string dir)
    {
        var points = r.Points.Where(p => p.SpeculativeAttempts > 0).ToList();
        if (points.Count == 0)
        {
            return null;
        }

        string[] reasons = ["vma-not-found", "seq-odd", "seq-changed", "unsupported-kind", "no-page-table", "ptl-busy", "pte-changed", "access-error"];
        var palette = new ScottPlot.Palettes.Category10();
        var plt = new Plot();
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        double top = 0;
        for (int g = 0; g < points.Count; g++)
        {
            // Aborts per 1,000 attempts, stacked by reason: success is usually above 99%, so shares of attempts
            // would hide the reasons; the success rate goes in the tick label instead.
            ScalingPoint p = points[g];
            double attempts = p.SpeculativeAttempts;
            double baseValue = 0;
            for (int k = 0; k < reasons.Length; k++)
            {
                double perMille = 1000 * p.AbortReasons.GetValueOrDefault(reasons[k]) / attempts;
                if (perMille <= 0)
                {
                    continue;
                }

                bars.Add(new Bar { Position = g, ValueBase = baseValue, Value = baseValue + perMille, FillColor = palette.GetColor(k) });
                baseValue += perMille;
            }

            top = Math.Max(top, baseValue);
            string success = (p.SpeculativeSuccesses / attempts).ToString("P1", System.Globalization.CultureInfo.InvariantCulture);
            ticks.Add(new Tick(g, $"{p.Workload}\n{p.Strategy}, {p.Threads}T\nsuccess {success}"));
        }

        if (bars.Count > 0)
        {
            plt.Add.Bars(bars);
        }

        for (int k = 0; k < reasons.Length; k++)
        {
            if (points.Any(p => p.AbortReasons.GetValueOrDefault(reasons[k]) > 0))
            {
                plt.Legend.ManualItems.Add(new LegendItem { LabelText = reasons[k], FillColor = palette.GetColor(k) });
            }
        }

        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plt.Axes.Bottom.TickLabelStyle.FontSize = 10;
        plt.Axes.Bottom.MajorTickStyle.Length = 0;
        plt.Title("Speculative fault aborts by reason");
        plt.YLabel("aborts per 1,000 speculative attempts");
        plt.Axes.SetLimitsY(0, Math.Max(1, top * 1.3));
        plt.Axes.SetLimitsX(-0.6, points.Count - 0.4);
        plt.ShowLegend(Alignment.UpperRight, Orientation.Horizontal);
        int width = Math.Max(Width, 140 * points.Count);
        return Save(plt, dir, "speculative-outcomes", "Speculative faults: abort reasons (per 1,000 attempts) and success rate", width);
    }

    private static PlotFile Save(Plot plt, string dir, string name, string title, int width = Width)
    {
        string png = name + ".png";
        string svg = name + ".svg";
        plt.SavePng(Path.Combine(dir, png), width, Height);
        plt.SaveSvg(Path.Combine(dir, svg), width, Height);
        return new PlotFile(title, png, svg);
    }
}
