#include "track/lap.h"

#include <algorithm>
#include <cstddef>
#include <limits>

namespace y26 {

std::vector<int> solve_square_assignment(const std::vector<double>& cost, int n) {
  // Shortest augmenting path with potentials u (rows) and v (columns); 1-based with a virtual column 0.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0), v(n + 1, 0), minv(n + 1);
  std::vector<int> row_of_col(n + 1, 0), way(n + 1, 0);
  std::vector<char> used(n + 1);
  for (int i = 1; i <= n; ++i) {
    row_of_col[0] = i;
    int j0 = 0;
    std::fill(minv.begin(), minv.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int i0 = row_of_col[j0];
      double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double cur = cost[(size_t)(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used[j]) {
          u[row_of_col[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (row_of_col[j0] != 0);
    do {  // flip the augmenting path
      const int j1 = way[j0];
      row_of_col[j0] = row_of_col[j1];
      j0 = j1;
    } while (j0);
  }
  std::vector<int> col_of_row(n, -1);
  for (int j = 1; j <= n; ++j)
    if (row_of_col[j] > 0) col_of_row[row_of_col[j] - 1] = j - 1;
  return col_of_row;
}

Assignment linear_assignment(const std::vector<double>& cost, int rows, int cols, double limit) {
  Assignment a;
  if (rows == 0 || cols == 0) {
    for (int i = 0; i < rows; ++i) a.unmatched_rows.push_back(i);
    for (int j = 0; j < cols; ++j) a.unmatched_cols.push_back(j);
    return a;
  }
  // Extended square matrix [[C, L/2], [L/2, 0]]: a row left alone pairs with a dummy column at L/2, and so does
  // a column, so a real pair is taken only when it beats leaving both alone (cost < L).
  const int n = rows + cols;
  std::vector<double> ext((size_t)n * n, limit / 2);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double& e = ext[(size_t)i * n + j];
      if (i < rows && j < cols) e = cost[(size_t)i * cols + j];
      else if (i >= rows && j >= cols) e = 0;
    }
  const std::vector<int> col_of_row = solve_square_assignment(ext, n);
  std::vector<char> col_used(cols, 0);
  for (int i = 0; i < rows; ++i) {
    const int j = col_of_row[i];
    if (j < cols) {
      a.matches.emplace_back(i, j);
      col_used[j] = 1;
    } else {
      a.unmatched_rows.push_back(i);
    }
  }
  for (int j = 0; j < cols; ++j)
    if (!col_used[j]) a.unmatched_cols.push_back(j);
  return a;
}

}  // namespace y26
