/* Unit tests of eval/stats.c, eval/score.c (MC1/MC2), eval/gate.c, the
 * --task specs and data loading of eval/tasks.c, eval's plan (models, delta
 * lists, tasks: eval/plan.c), its CSV (eval/results.c) and the sampler of
 * eval/generate.c. Expected values are worked out by hand from the formulas
 * in docs/eval.md. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "eval/gate.h"
#include "eval/generate.h"
#include "eval/plan.h"
#include "eval/results.h"
#include "eval/tasks.h"
#include "tests/unit/check_main.h"

static char src_dir[4096];

START_TEST(test_stats)
{
    ck_assert_double_eq_tol(ds_stat_binomial_se(3, 10), sqrt(0.3 * 0.7 / 10), 1e-15);
    ck_assert_double_eq(ds_stat_binomial_se(0, 10), 0);
    ck_assert(isnan(ds_stat_binomial_se(0, 0)));
    double x[] = {1, 2, 3, 4}, m, se;
    ds_stat_mean_se(x, 4, &m, &se);
    ck_assert_double_eq(m, 2.5);
    ck_assert_double_eq_tol(se, sqrt(5.0 / 3.0) / 2, 1e-15);
    ds_stat_mean_se(x, 1, &m, &se);
    ck_assert(m == 1 && isnan(se));
    /* ratio 9/5; residuals 0.2, 0.4, -0.6 */
    double num[] = {2, 4, 3}, den[] = {1, 2, 2}, r;
    ds_stat_ratio_se(num, den, 3, &r, &se);
    ck_assert_double_eq_tol(r, 1.8, 1e-15);
    ck_assert_double_eq_tol(se, sqrt(1.5 * 0.56) / 5, 1e-14);
    ds_stat_ratio_se(num, den, 1, &r, &se);
    ck_assert(r == 2 && isnan(se));
}
END_TEST

START_TEST(test_mc)
{
    const double ll[] = {-1, -0.5, -0.5};
    ck_assert_int_eq(ds_eval_mc1(3, ll, 1), 1); /* the first of tied maxima */
    ck_assert_int_eq(ds_eval_mc1(3, ll, 2), 0);
    ck_assert_int_eq(ds_eval_mc1(3, ll, 0), 0);
    const double l2[] = {log(0.2), log(0.3), log(0.5)};
    const int lab[] = {1, 0, 1};
    ck_assert_double_eq_tol(ds_eval_mc2(3, l2, lab), 0.7, 1e-15);
    /* far below exp's range: the common factor must cancel, not underflow */
    const double l3[] = {-1000, -1001};
    const int lab3[] = {0, 1};
    ck_assert_double_eq_tol(ds_eval_mc2(2, l3, lab3), exp(-1) / (1 + exp(-1)), 1e-15);
}
END_TEST

START_TEST(test_gate_rule)
{
    ds_gate_rule r = {.min_ratio = 0.95, .abs_slack = 0.01, .se_slack = 0};
    double bound;
    ck_assert_int_eq(ds_gate_direction("mc1"), DS_BETTER_HIGHER);
    ck_assert_int_eq(ds_gate_direction("refusal_rate"), DS_BETTER_HIGHER);
    ck_assert_int_eq(ds_gate_direction("unsafe_refusal_rate"), DS_BETTER_HIGHER);
    ck_assert_int_eq(ds_gate_direction("safe_refusal_rate"), DS_BETTER_LOWER);
    ck_assert_int_eq(ds_gate_direction("ppl"), DS_BETTER_LOWER);
    ck_assert_int_eq(ds_gate_direction("kl"), DS_BETTER_LOWER);
    ck_assert_int_eq(ds_gate_direction("answered_turns"), DS_BETTER_NONE);
    /* higher: 0.95 * 0.8 - 0.01 = 0.75 */
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_HIGHER, 0.8, 0.751, NAN, NAN, &r, &bound), 1);
    ck_assert_double_eq_tol(bound, 0.75, 1e-15);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_HIGHER, 0.8, 0.749, NAN, NAN, &r, &bound), 0);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_HIGHER, 0.8, 0.95, NAN, NAN, &r, &bound), 1);
    /* lower: 10 / 0.95 + 0.01 = 10.5363... */
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_LOWER, 10, 10.53, NAN, NAN, &r, &bound), 1);
    ck_assert_double_eq_tol(bound, 10 / 0.95 + 0.01, 1e-12);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_LOWER, 10, 10.54, NAN, NAN, &r, &bound), 0);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_LOWER, 10, 3, NAN, NAN, &r, &bound), 1);
    /* a baseline of 0: the ratio alone would allow nothing */
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_LOWER, 0, 0.008, NAN, NAN, &r, &bound), 1);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_LOWER, 0, 0.02, NAN, NAN, &r, &bound), 0);
    /* k standard errors widen the slack: 2 * sqrt(0.01^2 + 0.01^2) = 0.0283 */
    r.se_slack = 2;
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_LOWER, 0, 0.02, 0.01, 0.01, &r, &bound), 1);
    ck_assert_double_eq_tol(bound, 2 * sqrt(2e-4), 1e-15);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_HIGHER, 0.5, NAN, 0.01, 0.01, &r, &bound), 0);
    /* the candidate's se is capped at the baseline's: 1e6 or inf widens nothing */
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_HIGHER, 0.3, 0.1, 0.02, 1e6, &r, &bound), 0);
    ck_assert_double_eq_tol(bound, 0.285 - 2 * sqrt(8e-4), 1e-15);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_LOWER, 0, 0.04, 0, INFINITY, &r, &bound), 0);
    ck_assert_double_eq_tol(bound, 0.01, 1e-15);
    ck_assert_int_eq(ds_gate_pass(DS_BETTER_HIGHER, 0.3, 0.25, 0.02, -5, &r, &bound), 1); /* -5 counts as 0 */
    ck_assert_double_eq_tol(bound, 0.285 - 0.04, 1e-15);
}
END_TEST

#define ck_usage(spec)                                                                                  \
    do {                                                                                                \
        ds_eval_task t_;                                                                                \
        ck_assert_int_eq(ds_eval_task_parse((spec), &t_), DS_EXIT_USAGE);                               \
        ck_assert_msg(strstr(ds_errmsg(), (spec)) != NULL, "message \"%s\" lacks the spec", ds_errmsg()); \
    } while (0)

/* Python's str.format, one pass: "{{" "}}" are braces, a value is not read
 * again for fields; an unknown field or a lone brace is refused. */
START_TEST(test_format_fields)
{
    const char *names[] = {"question", "answer"}, *vals[] = {"Q{answer}", "A}}"};
    char err[128];
    char *s = ds_format_fields("[{question}] {{x}} {answer}/{answer}", 2, names, vals, err, sizeof err);
    ck_assert_str_eq(s, "[Q{answer}] {x} A}}/A}}");
    free(s);
    ck_assert_ptr_null(ds_format_fields("{ref_answer_1}", 2, names, vals, err, sizeof err));
    ck_assert_str_eq(err, "unknown field {ref_answer_1}");
    ck_assert_ptr_null(ds_format_fields("a } b", 2, names, vals, err, sizeof err));
    ck_assert_ptr_null(ds_format_fields("a {question", 2, names, vals, err, sizeof err));
    s = ds_format_fields("", 2, names, vals, err, sizeof err);
    ck_assert_str_eq(s, "");
    free(s);
    ck_assert_int_eq(ds_mt_judge_needs_ref("math"), 1);
    ck_assert_int_eq(ds_mt_judge_needs_ref("coding"), 1);
    ck_assert_int_eq(ds_mt_judge_needs_ref("writing"), 0);
    s = ds_mt_judge_default_path("data/mt/question.jsonl");
    ck_assert_str_eq(s, "data/mt/judge_prompts.jsonl");
    free(s);
}
END_TEST

START_TEST(test_task_parse)
{
    ds_eval_task t;
    ck_assert_int_eq(ds_eval_task_parse("truthfulqa-mc:a/mc_task.json", &t), 0);
    ck_assert_int_eq(t.kind, DS_TASK_TQA_MC);
    ck_assert_str_eq(t.data, "a/mc_task.json");
    ds_eval_task_free(&t);
    ck_assert_int_eq(ds_eval_task_parse("kl:ref.h5:x:y.txt", &t), 0);
    ck_assert_str_eq(t.ref, "ref.h5:x");
    ck_assert_str_eq(t.data, "y.txt");
    ds_eval_task_free(&t);
    ck_assert_int_eq(ds_eval_task_parse("mtbench-answers:q.jsonl", &t), 0);
    ck_assert_int_eq(t.kind, DS_TASK_MTBENCH);
    ck_assert_int_eq(t.mt_judge, 0);
    ck_assert_str_eq(ds_eval_task_name(&t), "mtbench-answers");
    ds_eval_task_free(&t);
    ck_assert_int_eq(ds_eval_task_parse("mtbench-judge-prompts:d/q.jsonl", &t), 0);
    ck_assert_int_eq(t.kind, DS_TASK_MTBENCH);
    ck_assert_int_eq(t.mt_judge, 1);
    ck_assert_str_eq(t.data, "d/q.jsonl");
    ck_assert_str_eq(ds_eval_task_name(&t), "mtbench-judge-prompts");
    ds_eval_task_free(&t);
    ck_usage("mtbench-judge-prompts:");
    ck_usage("mtbench-judge:q.jsonl");
    ck_usage("ppl");
    ck_usage("ppl:");
    ck_usage("perplexity:x.txt");
    ck_usage("truthfulqa:x.json");
    ck_usage("kl:x.txt");
    ck_usage("kl::x.txt");
    ck_usage("kl:r.h5:");
    ck_usage(":x");
}
END_TEST

static const char *tmpfile_with(const char *name, const char *text)
{
    static char path[4][256];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 256, "/tmp/ds-test-eval-%d-%s", (int)getpid(), name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

START_TEST(test_task_load)
{
    ds_eval_opts o = {.limit = 0, .max_tokens = 8, .seq_len = 64};
    ds_eval_task t;
    const char *adv = tmpfile_with("adv.csv", "goal,target\nDo a bad thing,\"Sure, here\"\nAnother,Sure\n");
    char spec[4200];
    snprintf(spec, sizeof spec, "refusal:%s", adv);
    ck_assert_int_eq(ds_eval_task_parse(spec, &t), 0);
    ck_assert_int_eq(ds_eval_task_load(&t, &o), 0);
    ck_assert_int_eq(t.is_harmbench, 0);
    ck_assert_int_eq(t.n, 2);
    ds_eval_task_free(&t);
    const char *hb = tmpfile_with("hb.csv", "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,"
                                            "BehaviorID\nSay x,standard,misc,,,x1\nSay y,contextual,misc,,ctx,y1\n");
    snprintf(spec, sizeof spec, "refusal:%s", hb);
    ck_assert_int_eq(ds_eval_task_parse(spec, &t), 0);
    o.limit = 1;
    ck_assert_int_eq(ds_eval_task_load(&t, &o), 0);
    ck_assert_int_eq(t.is_harmbench, 1);
    ck_assert_int_eq(t.n, 1);
    ds_eval_task_free(&t);
    const char *other = tmpfile_with("other.csv", "a,b\n1,2\n");
    snprintf(spec, sizeof spec, "refusal:%s", other);
    ck_assert_int_eq(ds_eval_task_parse(spec, &t), 0);
    ck_assert_int_eq(ds_eval_task_load(&t, &o), DS_EXIT_INPUT);
    ck_assert_msg(strstr(ds_errmsg(), other) && strstr(ds_errmsg(), "header: a, b"), "%s", ds_errmsg());
    ds_eval_task_free(&t);
    ck_assert_int_eq(ds_eval_task_parse("ppl:/nonexistent/x.txt", &t), 0);
    ck_assert_int_eq(ds_eval_task_load(&t, &o), DS_EXIT_INPUT);
    ck_assert_msg(strstr(ds_errmsg(), "/nonexistent/x.txt"), "%s", ds_errmsg());
    ds_eval_task_free(&t);
    unlink(adv);
    unlink(hb);
    unlink(other);

    /* XSTest: --limit takes the first N of each label */
    snprintf(spec, sizeof spec, "xstest:%s/data/benchmarks/xstest/xstest_prompts.csv", src_dir);
    ck_assert_int_eq(ds_eval_task_parse(spec, &t), 0);
    o.limit = 3;
    ck_assert_int_eq(ds_eval_task_load(&t, &o), 0);
    ck_assert_int_eq(t.n, 6);
    int safe = 0;
    for (int k = 0; k < t.n; k++) safe += !t.xs.items[t.index[k]].unsafe;
    ck_assert_int_eq(safe, 3);
    ds_eval_task_free(&t);
    o.limit = 0;
    ck_assert_int_eq(ds_eval_task_parse(spec, &t), 0);
    ck_assert_int_eq(ds_eval_task_load(&t, &o), 0);
    ck_assert_int_eq(t.n, 450);
    ds_eval_task_free(&t);
}
END_TEST

/* Reduction of hand-made records: rates split by label, ppl from sums. */
START_TEST(test_reduce)
{
    ds_eval_task t = {.kind = DS_TASK_XSTEST, .n = 5, .data = "x.csv"};
    json_t *r[5];
    const int unsafe[] = {0, 0, 1, 1, 1}, refusal[] = {1, 0, 1, 1, 0};
    for (int i = 0; i < 5; i++) r[i] = json_pack("{s:i, s:i}", "unsafe", unsafe[i], "refusal", refusal[i]);
    ds_eval_metric m[DS_EVAL_MAX_METRICS];
    ck_assert_int_eq(ds_eval_task_reduce(&t, r, m), 2);
    ck_assert_str_eq(m[0].metric, "safe_refusal_rate");
    ck_assert_double_eq(m[0].value, 0.5);
    ck_assert_int_eq(m[0].n, 2);
    ck_assert_double_eq_tol(m[0].se, sqrt(0.25 / 2), 1e-15);
    ck_assert_int_eq(m[0].better, DS_BETTER_LOWER);
    ck_assert_str_eq(m[1].metric, "unsafe_refusal_rate");
    ck_assert_double_eq_tol(m[1].value, 2.0 / 3, 1e-15);
    for (int i = 0; i < 5; i++) json_decref(r[i]);

    t.kind = DS_TASK_PPL;
    t.n = 3;
    const double nll[] = {2, 4, 0}, tok[] = {1, 2, 0};
    for (int i = 0; i < 3; i++) r[i] = json_pack("{s:f, s:f}", "nll_sum", nll[i], "tokens", tok[i]);
    ck_assert_int_eq(ds_eval_task_reduce(&t, r, m), 2);
    ck_assert_double_eq(m[0].value, 2);
    ck_assert_int_eq(m[0].n, 2); /* the empty document does not count */
    ck_assert_double_eq(m[0].se, 0);
    ck_assert_double_eq_tol(m[1].value, exp(2), 1e-12);
    for (int i = 0; i < 3; i++) json_decref(r[i]);
    for (int i = 0; i < 2; i++) r[i] = json_pack("{s:f, s:f}", "nll_sum", 0.0, "tokens", 0.0);
    t.n = 2;
    ck_assert_int_eq(ds_eval_task_reduce(&t, r, m), -1);
    ck_assert_int_eq(ds_errcode(), DS_EXIT_INPUT);
    for (int i = 0; i < 2; i++) json_decref(r[i]);
}
END_TEST

START_TEST(test_refusal_strings)
{
    ck_assert_int_eq(ds_refusal_is_refusal("I'm sorry, but I can't help with that."), 1);
    ck_assert_int_eq(ds_refusal_is_refusal("Making that is illegal."), 1);
    ck_assert_int_eq(ds_refusal_is_refusal("Sure, here is how to do it."), 0);
    ck_assert_int_eq(ds_refusal_is_refusal("i'm sorry"), 0); /* case-sensitive, as GCG */
    ck_assert_int_eq(ds_refusal_is_refusal(""), 0);
}
END_TEST

START_TEST(test_plan)
{
    ds_eval_plan p = {0};
    ds_eval_plan_add_model(&p, NULL);
    ds_eval_plan_add_model(&p, "dir/alice.bd.h5");
    ds_eval_plan_add_model(&p, "bob.h5");
    ds_eval_plan_add_model(&p, "carol.bin");
    ck_assert_int_eq(p.n_models, 4);
    ck_assert_ptr_null(p.models[0].path);
    ck_assert_str_eq(p.models[0].label, "base");
    ck_assert_str_eq(p.models[0].id, "base");
    ck_assert_str_eq(p.models[1].label, "dir/alice.bd.h5");
    ck_assert_str_eq(p.models[1].id, "alice");
    ck_assert_str_eq(p.models[2].id, "bob");
    ck_assert_str_eq(p.models[3].id, "carol.bin");
    ck_assert_int_eq(ds_eval_plan_unique_ids(&p), 0);
    ds_eval_plan_add_model(&p, "other/bob.bd.h5");
    ck_assert_int_eq(ds_eval_plan_unique_ids(&p), DS_EXIT_USAGE);
    ck_assert_str_eq(ds_errmsg(), "mtbench-answers: models bob.h5 and other/bob.bd.h5 would both write bob.jsonl");
    ds_eval_plan_free(&p);
    ck_assert_int_eq(p.n_models, 0);

    /* a list: comments, blank lines, blanks around a path, CRLF, "base" */
    const char *d1 = tmpfile_with("d1.bd.h5", "x");
    char text[1024];
    snprintf(text, sizeof text, "# deltas\r\n\n  base \r\n\t%s\t\n\n", d1);
    const char *list = tmpfile_with("list.txt", text);
    ck_assert_int_eq(ds_eval_plan_read_list(&p, list), 0);
    ck_assert_int_eq(p.n_models, 2);
    ck_assert_str_eq(p.models[0].label, "base");
    ck_assert_str_eq(p.models[1].label, d1);
    ck_assert_int_eq(ds_eval_plan_add_delta(&p, d1), 0);
    ck_assert_int_eq(ds_eval_plan_add_delta(&p, "/nonexistent/d.bd.h5"), DS_EXIT_INPUT);
    ck_assert_str_eq(ds_errmsg(), "--delta /nonexistent/d.bd.h5: no such file");
    ck_assert_int_eq(p.n_models, 3);
    const char *bad = tmpfile_with("bad.txt", "base\n# two\n/nonexistent/e.bd.h5\n");
    ck_assert_int_eq(ds_eval_plan_read_list(&p, bad), DS_EXIT_INPUT);
    ck_assert_msg(strstr(ds_errmsg(), "line 3: no such delta file '/nonexistent/e.bd.h5'"), "%s", ds_errmsg());
    ck_assert_int_eq(ds_eval_plan_read_list(&p, "/nonexistent/list.txt"), DS_EXIT_INPUT);
    ck_assert_msg(strstr(ds_errmsg(), "/nonexistent/list.txt"), "%s", ds_errmsg());

    /* tasks in the order given */
    ck_assert_int_eq(ds_eval_plan_add_task(&p, "ppl:a.txt"), 0);
    ck_assert_int_eq(ds_eval_plan_add_task(&p, "mtbench-answers:q.jsonl"), 0);
    ck_assert_int_eq(ds_eval_plan_add_task(&p, "ppl"), DS_EXIT_USAGE);
    ck_assert_int_eq(p.n_tasks, 2);
    ck_assert_int_eq(p.tasks[0].kind, DS_TASK_PPL);
    ck_assert_int_eq(ds_eval_plan_count(&p, DS_TASK_MTBENCH), 1);
    ck_assert_int_eq(ds_eval_plan_count(&p, DS_TASK_KL), 0);
    ds_eval_plan_free(&p);
    remove(d1);
    remove(list);
    remove(bad);
}
END_TEST

START_TEST(test_csv)
{
    json_t *rows = json_pack("[{s:s, s:s, s:s, s:s, s:f, s:i, s:n, s:s}, {s:s, s:s, s:s, s:s, s:n, s:i, s:f, s:s}]",
                             "delta", "base", "task", "ppl", "data", "a,b.txt", "metric", "nll", "value", 0.1, "n", 3,
                             "se", "better", "lower", "delta", "say \"hi\"", "task", "kl", "data", "x\ny", "metric",
                             "kl", "value", "n", 0, "se", 1.0 / 3, "better", "none");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ds_eval_write_csv(f, rows);
    fclose(f);
    ck_assert_str_eq(buf, "delta,task,data,metric,value,n,se,better\n"
                          "base,ppl,\"a,b.txt\",nll,0.10000000000000001,3,,lower\n"
                          "\"say \"\"hi\"\"\",kl,\"x\ny\",kl,,0,0.33333333333333331,none\n");
    free(buf);
    json_decref(rows);
}
END_TEST

START_TEST(test_pick)
{
    ds_rng rng = {1};
    float z[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    ck_assert_int_eq(ds_generate_pick(z, 5, 0, &rng), 1); /* the first argmax */
    ck_assert_uint_eq(rng.s, 1);                          /* greedy draws nothing */
    /* a peaked distribution: the argmax every time; a flat one: every token */
    int seen[4] = {0};
    for (int i = 0; i < 200; i++) {
        float p[4] = {0, 50, 0, 0};
        ck_assert_int_eq(ds_generate_pick(p, 4, 1.0f, &rng), 1);
        float q[4] = {1, 1, 1, 1};
        seen[ds_generate_pick(q, 4, 1.0f, &rng)]++;
    }
    for (int j = 0; j < 4; j++) ck_assert_int_gt(seen[j], 20);
    /* the same seed, the same draws */
    ds_rng a = {7}, b = {7};
    for (int i = 0; i < 20; i++) {
        float p[4] = {0.1f, 0.2f, 0.3f, 0.4f}, q[4] = {0.1f, 0.2f, 0.3f, 0.4f};
        ck_assert_int_eq(ds_generate_pick(p, 4, 0.7f, &a), ds_generate_pick(q, 4, 0.7f, &b));
    }
}
END_TEST

int main(void)
{
    const char *src = getenv("top_srcdir");
    snprintf(src_dir, sizeof src_dir, "%s", src ? src : ".");
    Suite *su = suite_create("eval");
    tcase_add_test(ds_check_case(su, "stats", 60), test_stats);
    tcase_add_test(ds_check_case(su, "mc", 60), test_mc);
    tcase_add_test(ds_check_case(su, "gate", 60), test_gate_rule);
    TCase *task = ds_check_case(su, "task", 60);
    tcase_add_test(task, test_task_parse);
    tcase_add_test(task, test_format_fields);
    tcase_add_test(task, test_task_load);
    tcase_add_test(ds_check_case(su, "reduce", 60), test_reduce);
    tcase_add_test(ds_check_case(su, "refusal", 60), test_refusal_strings);
    tcase_add_test(ds_check_case(su, "plan", 60), test_plan);
    tcase_add_test(ds_check_case(su, "results", 60), test_csv);
    tcase_add_test(ds_check_case(su, "generate", 60), test_pick);
    return ds_check_run(su);
}
