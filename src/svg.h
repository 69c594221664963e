/* A small SVG chart writer (the nightly report's charts, io/report.c):
 * bar charts over categories, scatter plots and line charts with axes,
 * ticks at "nice" numbers (1, 2, 5 x 10^k), axis labels, a title, a legend
 * and a <title> tooltip per point. Pure: writes text to the stream it is
 * given. Every series is one <g class="series" data-name="..."> element (the
 * report's tests count them); NaN points are left out (a gap in a line). */
#ifndef DS_SVG_H
#define DS_SVG_H
#include <stdio.h>

/* Point markers. */
enum { DS_SVG_CIRCLE = 0, DS_SVG_CROSS, DS_SVG_SQUARE };

typedef struct {
    const char *name;       /* the legend's text */
    const char *color;      /* CSS color, e.g. "#1f77b4" */
    int line;               /* connect the points (in x order as given) */
    int n;
    const double *x, *y;    /* x: NULL for category charts (x = 0..n-1) */
    const double *err;      /* optional: error bars of +-err[i] (e.g. a standard error) */
    const int *marker;      /* per point, or NULL: every point DS_SVG_CIRCLE */
    int key_marker;         /* the marker of the series in the legend (DS_SVG_CIRCLE = 0 by default) */
    const char *const *point_color; /* per point (bars: the bar's fill), or NULL: color */
    const char *const *tip; /* per point tooltip text, or NULL */
} ds_svg_series;

/* An extra legend entry (a marker meaning, e.g. "refused night"). */
typedef struct {
    int marker;
    const char *color;
    const char *label;
} ds_svg_key;

typedef struct {
    const char *id;         /* the <svg> element's id */
    const char *title, *xlabel, *ylabel;
    int width, height;      /* pixels; 0: 560 x 300 */
    const char *const *xcat; /* category labels of x = 0..ncat-1, or NULL: numeric x */
    int ncat;
    int bars;               /* series[0] drawn as bars over the categories (y from 0) */
    const ds_svg_key *keys; /* extra legend entries */
    int nkeys;
} ds_svg_chart;

/* Tick positions at nice numbers covering [lo, hi] with about want ticks:
 * *first, *step, and the count (at most 32). lo == hi gets a small range. */
int ds_svg_ticks(double lo, double hi, int want, double *first, double *step);
/* Write s with &, <, >, " and ' escaped (text and attribute values). */
void ds_xml_escape(FILE *f, const char *s);
/* Write the chart as one <svg> element. */
void ds_svg_write(FILE *f, const ds_svg_chart *c, int ns, const ds_svg_series *s);
#endif
