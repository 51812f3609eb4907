package ari

// For the external (ari_test) tests.
var BudgetMargin = budgetMargin
